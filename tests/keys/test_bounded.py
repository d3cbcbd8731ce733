from keys.bounded import remember


def test_a_full_table_drops_its_oldest_entry_for_a_new_key_only():
    table: dict = {}
    for k in "abc":
        assert remember(table, k, k.upper(), 3) == k.upper()
    assert remember(table, "b", "B2", 3) == "B2"  # a key it holds: replaced in place, nothing dropped
    assert table == {"a": "A", "b": "B2", "c": "C"}
    remember(table, "d", "D", 3)
    assert list(table.items()) == [("b", "B2"), ("c", "C"), ("d", "D")]
