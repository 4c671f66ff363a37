"""The search benchmark's own machinery, at a small size (the real run is 1,000,000 messages)."""

from bench import search, search_data


def test_generated_messages_are_gapless_per_room_and_in_time_order():
    rows = list(search_data.message_rows(2_000, room_ids=[1, 2, 3], author_ids=[7, 8]))
    for room in (1, 2, 3):
        seqs = [row[2] for row in rows if row[0] == room]
        assert seqs == list(range(1, len(seqs) + 1))
    created = [row[5] for row in rows]
    assert created == sorted(created)
    assert all(3 <= len(row[4].split()) <= 30 for row in rows)


def test_small_run_on_sqlite_measures_every_query(tmp_path):
    results = search.run(tmp_path, messages=3_000, count=20, backends=("sqlite",))
    got = results["sqlite"]
    assert "error" not in got, got.get("error")
    assert got["queries"] == 20 and got["queries_with_hits"] > 0
    assert 0 < got["p50_ms"] <= got["p99_ms"] <= got["max_ms"]
    assert "| sqlite | 3,000 |" in search.markdown(results)
