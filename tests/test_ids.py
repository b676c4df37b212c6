"""Fresh replica and gang ids (pure)."""

from __future__ import annotations

from actors.serve.head._ids import fresh_id


def test_an_id_in_use_is_drawn_again() -> None:
    draws = iter(["00000001", "00000001", "00000002"])
    taken = {"app.d.00000001"}
    assert fresh_id("app.d.", taken.__contains__, lambda n: next(draws)) == "app.d.00000002"


def test_after_sixteen_ids_in_use_in_a_row_the_id_gets_128_random_bits() -> None:
    sizes: list[int] = []

    def draw(n: int) -> str:
        sizes.append(n)
        return "ab" * n

    assert fresh_id("g-", lambda candidate: len(candidate) == len("g-") + 8, draw) == "g-" + "ab" * 16
    assert sizes == [4] * 16 + [16]


def test_ids_are_eight_random_hex_digits_after_the_prefix() -> None:
    made = {fresh_id("app.d.", lambda _: False) for _ in range(200)}
    assert len(made) == 200 and all(len(i) == len("app.d.") + 8 and int(i[6:], 16) >= 0 for i in made)
