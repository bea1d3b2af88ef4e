import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fragfix.errors import MapfileError
from fragfix.files.mapfile import Block, format_mapfile, parse_mapfile, read_mapfile

REAL = """# Mapfile. Created by GNU ddrescue version 1.27
# Command line: ddrescue -d /dev/sdb disk.img disk.map
# Start time:   2026-11-20 10:00:00
# Current time: 2026-11-20 11:00:00
# Finished
# current_pos  current_status  current_pass
0x00120000     +               1
#      pos        size  status
0x00000000  0x00117000  +
0x00117000  0x00000200  -
0x00117200  0x00008E00  +
0x00120000  0x00000400  *
0x00120400  0x00000100  /
0x00120500  0x00000100  ?
0x00120600  0x0001FA00  +
"""


def test_real_ddrescue_mapfile():
    m = parse_mapfile(REAL)
    assert (m.current_pos, m.current_status, m.current_pass) == (0x120000, "+", 1)
    assert m.blocks[1] == Block(0x117000, 0x200, "-")
    assert m.size == 0x140000
    assert m.bad_ranges() == [(0x117000, 0x117200), (0x120000, 0x120600)]


def test_old_status_line_without_pass_decimal_octal_and_indented_comments():
    m = parse_mapfile("  # old ddrescue\n0 ?\n   # blocks\n0 1024 +\n1024 0100 -\n1088 16 +\n")
    assert m.current_pass is None and m.size == 1104 and m.bad_ranges() == [(1024, 1088)]


@pytest.mark.parametrize("text, message", [
    ("", "no status line"),
    ("# only comments\n", "no status line"),
    ("0x0 +\n", "no blocks"),
    ("0x0 + 1\n0x0 0x10 +\n0x8 0x10 -\n", "overlaps"),
    ("0x0 + 1\n0x0 0x10 +\n0x20 0x10 -\n", "gap"),
    ("0x0 + 1\n0x10 0x10 +\n", "does not start at 0"),
    ("0x0 + 1\n0x0 0x10 X\n", "unknown block status"),
    ("0x0 + 1\n0x0 0 +\n", "size must be positive"),
    ("0x0 + 1\n0x0 -5 +\n", "not a C integer"),
    ("0x0 + 1\n0xZZ 0x10 +\n", "not a C integer"),
    ("0x0 + 1\n0 09 +\n", "not a C integer"),
    ("0x0 Q 1\n0x0 0x10 +\n", "status line"),
    ("0x0 + 1\n0x0 0x10\n", "expected a block"),
])
def test_malformed_mapfiles_name_the_problem(text, message):
    with pytest.raises(MapfileError, match=message):
        parse_mapfile(text)


def test_mapfile_must_fit_the_file_size(tmp_path):
    p = tmp_path / "m.map"
    p.write_text("0 +\n0 0x400 +\n")
    assert read_mapfile(p, 1024).size == 1024
    with pytest.raises(MapfileError, match="describes 1024 bytes but the file has 2048"):
        read_mapfile(p, 2048)
    p.write_bytes(b"\xff\xfe binary")
    with pytest.raises(MapfileError, match="not ASCII"):
        read_mapfile(p)


def test_comments_are_free_text_and_may_end_a_line(tmp_path):
    """ddrescue writes its command line into a comment: a path in UTF-8 (or any bytes) is fine
    there, and so is a comment after a block; outside comments only ASCII is."""
    p = tmp_path / "m.map"
    p.write_bytes("# Command line: ddrescue /dev/sdb /media/José/disk.img /media/José/disk.map\n".encode()
                  + b"# latin-1 too: Jos\xe9\n0 +  # status\n0 0x200 +   # good\n0x200 0x200 -  # bad sector\n")
    m = read_mapfile(p, 1024)
    assert m.bad_ranges() == [(512, 1024)]
    p.write_bytes("0 +\n0 0x400 +\u00e9\n".encode())
    with pytest.raises(MapfileError, match="line 2: not ASCII"):
        read_mapfile(p)


def test_format_roundtrips():
    text = format_mapfile([(10, 20), (100, 101)], 200, "guesses")
    m = parse_mapfile(text)
    assert m.size == 200 and m.bad_ranges() == [(10, 20), (100, 101)]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("0123456789abcdefxX +-?*/#\n\t FG")), max_size=200))
def test_random_text_parses_or_raises_our_error(text):
    try:
        m = parse_mapfile(text)
    except MapfileError:
        return
    assert m.blocks and m.blocks[0].pos == 0
    assert all(a.end == b.pos for a, b in zip(m.blocks, m.blocks[1:]))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 5000), st.sampled_from("+-?*/")), min_size=1, max_size=30))
def test_any_valid_layout_roundtrips(blocks):
    pos, lines = 0, ["0x0 ? 2"]
    for size, s in blocks:
        lines.append(f"{pos:#x} {size:#x} {s}")
        pos += size
    m = parse_mapfile("\n".join(lines))
    assert m.size == pos
    assert parse_mapfile(format_mapfile(m.bad_ranges(), m.size)).bad_ranges() == m.bad_ranges()
