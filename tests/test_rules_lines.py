"""The line scanner that gives rule files their line numbers."""

from detector.rules.lines import SourceLines, scan_blocks

TEXT = '''\
# comment
[ruleset]
name = "x"
description = """
[[rules]]
id = "not a header: inside a multi-line string"
"""

[[rules]]
id = "a"
  condition = "a > 1"

[[rules.tests]]
features = { a = 2 }
expect = true

[[ rules ]]  # spaces and a comment
"id" = "b"
tests = [{ features = { a = 1 }, expect = false }]

[extras.sub]
k = 1
'''


def test_blocks_and_key_lines():
    blocks = scan_blocks(TEXT)
    assert [(b.name, b.line) for b in blocks] == [
        ("", 1),
        ("ruleset", 2),
        ("rules", 9),
        ("rules.tests", 13),
        ("rules", 17),
        ("extras.sub", 21),
    ]
    assert blocks[1].keys == {"name": 3, "description": 4}
    assert blocks[2].keys == {"id": 10, "condition": 11}


def test_rule_and_test_lines_fall_back_to_enclosing_lines():
    lines = SourceLines(TEXT)
    assert lines.table("ruleset", "description") == 4
    assert lines.table("ruleset", "missing") == 2
    assert lines.rule(0) == 9
    assert lines.rule(0, "condition") == 11
    assert lines.rule(1, "id") == 18
    assert lines.test(0, 0) == 13
    assert lines.test(0, 0, "expect") == 15
    # Inline test cases: the rule's `tests =` line.
    assert lines.test(1, 0) == 19
    assert lines.table("", "extras") == 21  # written only as a sub-table
    assert lines.table("nothing") == 1
