"""Text-mode transfer damage: a binary file sent as text, every LF (0x0A) written as CR LF.

FTP's ASCII mode, some mail gateways and version-control settings do this to files they take for
text; gzrecover's authors found it the commonest cause of "corrupted" gzip archives, and the PNG
signature holds CR LF, LF and 1A to show it. When every LF was converted the damage has an exact
inverse: each LF of the damaged file follows a CR the transfer put there, so removing the CR before
every LF gives back the original, CR LF pairs of the original included (they became CR CR LF).
Whether that was the damage only the file's own checks can say: the undone file must pass every
one of them (formats.repair), and then it is verified like any other repair: one candidate tried.
"""
from __future__ import annotations

import numpy as np

CR, LF = 0x0D, 0x0A
SIG_CONVERTED = b"\x89PNG\r\r\n\x1a\r\n"  # a PNG signature after the conversion (it was made to show it)


def converted(d: bytes) -> bool:
    """Whether every LF in `d` follows a CR (and there is at least one): the trace the conversion
    leaves. A file that passes its checks as it is was not converted, whatever this says."""
    lf = d.count(b"\n")
    return lf > 0 and d.count(b"\r\n") == lf


def undo(d: bytes) -> tuple[bytes, np.ndarray]:
    """`d` with the CR before every LF removed, and the offsets (in `d`) of the CRs removed."""
    a = np.frombuffer(d, np.uint8)
    at = np.flatnonzero((a[:-1] == CR) & (a[1:] == LF))
    return d.replace(b"\r\n", b"\n"), at
