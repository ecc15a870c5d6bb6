"""Detach-key specs and the DetachFilter: tables for each rule, hypothesis for splits and timing."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tmuxish.errors import UsageError
from tmuxish.keys import DEFAULT_DETACH_KEYS, ESCAPE_TIMEOUT, DetachFilter, parse_detach_keys

P, Q = b"\x10", b"\x11"
KEYS = P + Q
KITTY_P = b"\x1b[112;5u"
KITTY_Q = b"\x1b[113;5u"
P_FORMS = [
    P,
    KITTY_P,
    b"\x1b[112;5:1u",
    b"\x1b[112;5:2u",
    b"\x1b[112;69u",
    b"\x1b[27;5;112~",
    b"\x1b[112::112;5u",
]
Q_FORMS = [Q, KITTY_Q, b"\x1b[113;5:1u", b"\x1b[113;133u", b"\x1b[27;5;113~", b"\x1b[81;5u"]
#: Kitty events that neither continue nor break a held prefix: releases, modifier keys.
NEUTRAL_FORMS = [b"\x1b[112;5:3u", b"\x1b[57442;5u", b"\x1b[57442;5:3u", b"\x1b[113:81;5:3u"]
#: Escape sequences a terminal sends that are none of the above.
OTHER_FORMS = [
    b"\x1b[A",
    b"\x1b[1;5A",
    b"\x1bOP",
    b"\x1b[3~",
    b"\x1b[200~",
    b"\x1b[201~",
    b"\x1b[<0;12;7M",
    b"\x1b[27u",
    b"\x1b[113u",
    b"\x1b[112;6u",
    b"\x1b[112;7u",
    b"\x1b[27;2;112~",
    b"\x1b[27;5;50~",
    b"\x1bx",
    b"\x1b\x1bq",
]


def feed_all(f: DetachFilter, chunks: list[bytes], now: float = 0.0) -> tuple[bytes, bool]:
    out = b""
    for chunk in chunks:
        data, detached = f.feed(chunk, now)
        out += data
        if detached:
            return out, True
    return out, False


def chunks_of(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


# -- parse_detach_keys -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (DEFAULT_DETACH_KEYS, b"\x10\x11"),
        ("ctrl-a,d", b"\x01d"),
        ("CTRL-P,Ctrl-Q", b"\x10\x11"),
        ("ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_", b"\x00\x1b\x1c\x1d\x1e\x1f"),
        ("ctrl-z", b"\x1a"),
        ("a,B,~,!", b"aB~!"),
        (" ctrl-p , ctrl-q ", b"\x10\x11"),
        ("ctrl-a, ", b"\x01 "),
        ("", b""),
        ("   ", b""),
    ],
)
def test_parse_detach_keys(spec: str, expected: bytes) -> None:
    assert parse_detach_keys(spec) == expected


def test_every_ctrl_letter() -> None:
    for i, letter in enumerate("abcdefghijklmnopqrstuvwxyz", start=1):
        assert parse_detach_keys(f"ctrl-{letter}") == bytes([i])


@pytest.mark.parametrize(
    ("spec", "bad"),
    [
        ("ctrl-1,q", "ctrl-1"),
        ("ctrl-p,,ctrl-q", ""),
        ("ctrl-", "ctrl-"),
        ("ctrl-pp", "ctrl-pp"),
        ("alt-p", "alt-p"),
        ("ab", "ab"),
        ("é", "é"),
        (",", ""),
        ("ctrl-p,ctrl-?", "ctrl-?"),
    ],
)
def test_parse_detach_keys_rejects(spec: str, bad: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_detach_keys(spec)
    message = str(info.value)
    assert f"invalid detach key '{bad}' in '{spec}'" in message
    assert "ctrl-a..ctrl-z" in message
    assert "\n" not in message


def test_error_message_matches_the_documented_form() -> None:
    with pytest.raises(UsageError, match=r"^invalid detach key 'ctrl-1' in 'ctrl-1,q': use ctrl-a"):
        parse_detach_keys("ctrl-1,q")


# -- plain bytes -----------------------------------------------------------------------------------


def test_passthrough_without_keys() -> None:
    f = DetachFilter(KEYS)
    data = bytes(b for b in range(256) if b not in KEYS and b != 0x1B) * 100
    assert f.feed(data, 0.0) == (data, False)
    assert f.pending == b"" and f.deadline() is None


def test_disabled_passes_everything() -> None:
    f = DetachFilter(b"")
    for chunk in [P, Q, P + Q, KITTY_P + KITTY_Q, b"\x1b", bytes(range(256))]:
        assert f.feed(chunk, 0.0) == (chunk, False)
    assert f.pending == b"" and f.deadline() is None and f.expire(99.0) == b""


def test_match_in_the_middle_of_a_chunk_drops_the_rest() -> None:
    assert DetachFilter(KEYS).feed(b"abc\x10\x11def", 0.0) == (b"abc", True)


def test_match_split_one_byte_per_feed() -> None:
    f = DetachFilter(KEYS)
    assert f.feed(b"a", 0.0) == (b"a", False)
    assert f.feed(P, 0.0) == (b"", False)
    assert f.pending == P
    assert f.feed(Q, 0.1) == (b"", True)
    assert f.pending == b""


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([P + b"x"], P + b"x"),
        ([P, b"x"], P + b"x"),
        ([P + b"\x1b[A"], P + b"\x1b[A"),
        ([b"a" + P + b"bc"], b"a" + P + b"bc"),
        ([P + b"\x12"], P + b"\x12"),
        ([Q + P + b"q"], Q + P + b"q"),
    ],
)
def test_prefix_not_continued_is_forwarded(chunks: list[bytes], expected: bytes) -> None:
    f = DetachFilter(KEYS)
    assert feed_all(f, chunks) == (expected, False)
    assert f.pending == b""


def test_the_byte_that_breaks_a_prefix_can_start_a_new_match() -> None:
    f = DetachFilter(b"\x01\x02\x03")
    assert f.feed(b"\x01\x02\x01\x02\x03tail", 0.0) == (b"\x01\x02", True)
    f = DetachFilter(b"\x01\x01\x02")
    assert f.feed(b"\x01\x01\x01\x02", 0.0) == (b"\x01", True)


def test_first_key_twice_sends_it_once() -> None:
    f = DetachFilter(KEYS)
    assert f.feed(P + P, 0.0) == (P, False)
    assert f.pending == b"" and f.deadline() is None
    assert f.feed(P, 0.0) == (b"", False)
    assert f.feed(P, 0.0) == (P, False)
    # After a doubled prefix the second key is an ordinary byte.
    assert DetachFilter(KEYS).feed(P + P + Q, 0.0) == (P + Q, False)
    assert DetachFilter(KEYS).feed(P + P + P + Q, 0.0) == (P, True)


def test_doubling_does_not_apply_when_the_sequence_repeats_its_key() -> None:
    assert DetachFilter(P + P).feed(b"x" + P + P, 0.0) == (b"x", True)


def test_single_key_detaches_at_once() -> None:
    f = DetachFilter(b"\x01")
    assert f.feed(b"ab\x01cd", 0.0) == (b"ab", True)
    assert f.feed(b"\x01", 0.0) == (b"", True)
    assert f.feed(KITTY_P.replace(b"112", b"97"), 0.0) == (b"", True)
    assert f.deadline() is None


def test_printable_keys() -> None:
    f = DetachFilter(parse_detach_keys("ctrl-a,d"))
    assert f.feed(b"\x01x\x01\x01", 0.0) == (b"\x01x\x01", False)
    assert f.feed(b"\x01d", 0.0) == (b"", True)
    assert DetachFilter(b"\x01d").feed(b"\x01\x1b[100u", 0.0) == (b"", True)


def test_filter_is_reusable_after_detach() -> None:
    f = DetachFilter(KEYS)
    assert f.feed(P + Q + P, 0.0) == (b"", True)
    assert f.pending == b""
    assert f.feed(b"x" + P, 1.0) == (b"x", False)
    assert f.feed(Q, 1.0) == (b"", True)


# -- timing ----------------------------------------------------------------------------------------


def test_held_prefix_expires() -> None:
    f = DetachFilter(KEYS, timeout=0.5)
    assert f.deadline() is None
    f.feed(P, 10.0)
    assert f.deadline() == pytest.approx(10.5)
    assert f.expire(10.2) == b""
    assert f.pending == P
    assert f.expire(10.5) == P
    assert f.pending == b"" and f.deadline() is None
    assert f.expire(11.0) == b""
    assert f.feed(Q, 11.0) == (Q, False)


def test_expire_tolerates_a_timer_firing_a_hair_early() -> None:
    f = DetachFilter(KEYS, timeout=0.5)
    f.feed(P, 0.0)
    assert f.expire(0.4999) == P


@pytest.mark.parametrize("timeout", [0.0, -1.0])
def test_no_timeout_holds_until_the_next_key(timeout: float) -> None:
    f = DetachFilter(KEYS, timeout=timeout)
    f.feed(P, 0.0)
    assert f.deadline() is None
    assert f.expire(1e9) == b""
    assert f.feed(Q, 1e9) == (b"", True)


def test_feed_after_the_deadline_forwards_the_stale_prefix_first() -> None:
    f = DetachFilter(KEYS, timeout=0.5)
    f.feed(P, 0.0)
    assert f.feed(Q, 2.0) == (P + Q, False)


def test_each_key_of_a_longer_sequence_restarts_the_clock() -> None:
    f = DetachFilter(b"\x01\x02\x03", timeout=0.5)
    f.feed(b"\x01", 0.0)
    f.feed(b"\x02", 0.4)
    assert f.deadline() == pytest.approx(0.9)
    assert f.feed(b"\x03", 0.8) == (b"", True)


def test_neutral_events_do_not_restart_the_clock() -> None:
    f = DetachFilter(KEYS, timeout=0.5)
    f.feed(KITTY_P, 0.0)
    f.feed(b"\x1b[112;5:3u", 0.3)
    assert f.deadline() == pytest.approx(0.5)
    assert f.expire(0.5) == KITTY_P + b"\x1b[112;5:3u"


# -- encoded keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize("p", P_FORMS)
@pytest.mark.parametrize("q", Q_FORMS)
def test_encoded_forms_match(p: bytes, q: bytes) -> None:
    assert DetachFilter(KEYS).feed(b"ab" + p + q + b"zz", 0.0) == (b"ab", True)
    assert feed_all(DetachFilter(KEYS), [bytes([b]) for b in b"ab" + p + q]) == (b"ab", True)


@pytest.mark.parametrize("p", P_FORMS)
def test_encoded_prefix_not_continued_forwards_the_original_bytes(p: bytes) -> None:
    f = DetachFilter(KEYS)
    assert f.feed(p, 0.0) == (b"", False)
    assert f.pending == p
    assert f.feed(b"x", 0.0) == (p + b"x", False)
    f.feed(p, 1.0)
    assert f.expire(2.0) == p


def test_doubled_encoded_prefix_sends_the_first_press() -> None:
    assert DetachFilter(KEYS).feed(KITTY_P + b"\x1b[112;5:2u", 0.0) == (KITTY_P, False)


@pytest.mark.parametrize("neutral", NEUTRAL_FORMS)
def test_neutral_events_between_keys(neutral: bytes) -> None:
    assert DetachFilter(KEYS).feed(KITTY_P + neutral + KITTY_Q, 0.0) == (b"", True)
    f = DetachFilter(KEYS)
    assert f.feed(neutral, 0.0) == (neutral, False)
    assert f.feed(P + neutral + b"x", 0.0) == (P + neutral + b"x", False)


@pytest.mark.parametrize("other", OTHER_FORMS)
def test_other_escape_sequences_pass_through_at_once(other: bytes) -> None:
    f = DetachFilter(KEYS)
    assert f.feed(other, 0.0) == (other, False)
    assert f.pending == b""
    assert f.feed(P + other, 0.0) == (P + other, False)


@pytest.mark.parametrize(
    ("data", "held"),
    [
        (b"\x1b", b"\x1b"),
        (b"\x1b[", b"\x1b["),
        (b"\x1b[1", b"\x1b[1"),
        (b"\x1b[11", b"\x1b[11"),
        (b"\x1b[112;", b"\x1b[112;"),
        (b"\x1b[112;5", b"\x1b[112;5"),
        (b"\x1b[112;5:", b"\x1b[112;5:"),
        (b"\x1b[2", b"\x1b[2"),
        (b"\x1b[27;5;11", b"\x1b[27;5;11"),
        (b"\x1b[1;", b""),
        (b"\x1b[3", b""),
        (b"\x1b[113", b""),
        (b"\x1b[112;6", b"\x1b[112;6"),  # 69 is ctrl with caps lock
        (b"\x1b[112;3", b""),
        (b"\x1b[112;5:3", b""),
        (b"\x1b[27;5;113", b""),
        (b"\x1b[<", b""),
        (b"\x1bO", b""),
    ],
)
def test_cut_off_escape_is_held_only_while_it_could_match(data: bytes, held: bytes) -> None:
    f = DetachFilter(KEYS)
    out, detached = f.feed(data, 0.0)
    assert not detached
    assert (out, f.pending) == (data[: len(data) - len(held)], held)


def test_cut_off_escape_waits_only_briefly() -> None:
    f = DetachFilter(KEYS, timeout=0.0)
    assert f.feed(b"\x1b", 5.0) == (b"", False)
    assert f.deadline() == pytest.approx(5.0 + ESCAPE_TIMEOUT)
    # More of it arriving does not restart the clock.
    f.feed(b"[1", 5.01)
    assert f.deadline() == pytest.approx(5.0 + ESCAPE_TIMEOUT)
    assert f.expire(5.0 + ESCAPE_TIMEOUT) == b"\x1b[1"
    assert f.feed(b"12;5u", 6.0) == (b"12;5u", False)


def test_cut_off_escape_after_a_prefix_uses_the_earlier_deadline() -> None:
    f = DetachFilter(KEYS, timeout=0.5, escape_timeout=0.05)
    f.feed(P, 0.0)
    f.feed(b"\x1b[11", 0.1)
    assert f.deadline() == pytest.approx(0.15)
    assert f.expire(0.15) == P + b"\x1b[11"
    f.feed(P + b"\x1b", 1.0)
    assert f.deadline() == pytest.approx(1.05)
    assert f.feed(b"[113;5u", 1.01) == (b"", True)


def test_escape_key_as_detach_key() -> None:
    # A lone ESC is taken as the key at once rather than waiting for a kitty sequence.
    assert DetachFilter(b"\x1b").feed(b"ab\x1b", 0.0) == (b"ab", True)
    f = DetachFilter(parse_detach_keys("ctrl-[,q"))
    assert f.feed(b"\x1bq", 0.0) == (b"", True)
    assert f.feed(b"\x1b[A", 0.0) == (b"\x1b[A", False)
    assert f.feed(b"\x1b[91;5uq", 0.0) == (b"", True)


def test_bracketed_paste_is_scanned_too() -> None:
    data = b"\x1b[200~echo \x10\x11 hi\x1b[201~"
    assert DetachFilter(KEYS).feed(data, 0.0) == (b"\x1b[200~echo ", True)


def test_pending_combines_prefix_and_cut_off_escape() -> None:
    f = DetachFilter(KEYS)
    f.feed(KITTY_P + b"\x1b[57442;5:3u\x1b[1", 0.0)
    assert f.pending == KITTY_P + b"\x1b[57442;5:3u\x1b[1"


# -- properties ------------------------------------------------------------------------------------

#: Atoms a terminal may send, classed as the first key, the second, neutral, or other.
_PLAIN = st.binary(min_size=1, max_size=8).map(
    lambda b: bytes(c for c in b if c not in b"\x10\x11\x1b")
)
ATOMS = st.one_of(
    st.tuples(st.sampled_from(P_FORMS), st.just("P")),
    st.tuples(st.sampled_from(Q_FORMS), st.just("Q")),
    st.tuples(st.sampled_from(NEUTRAL_FORMS), st.just("N")),
    st.tuples(st.sampled_from(OTHER_FORMS), st.just("O")),
    st.tuples(_PLAIN.filter(bool), st.just("O")),
)


def model(atoms: list[tuple[bytes, str]]) -> tuple[bytes, bool]:
    """The filter's rules over whole keys, with no splits and no timeouts, then a final expire."""
    out = b""
    held: list[bytes] = []
    for atom, kind in atoms:
        if held:
            if kind == "Q":
                return out, True
            if kind == "N":
                held.append(atom)
                continue
            out += b"".join(held)
            held = []
            if kind == "P":
                continue  # the doubled first key is consumed
        if kind == "P":
            held = [atom]
        else:
            out += atom
    return out + b"".join(held), False


def feed_timed(f: DetachFilter, chunks: list[bytes], gaps: list[float]) -> tuple[bytes, bool]:
    """Feed like the I/O loop does: expire whenever the deadline passes between reads."""
    now = 0.0
    out = b""
    for i, chunk in enumerate(chunks):
        now += gaps[i % len(gaps)] if gaps else 0.0
        deadline = f.deadline()
        if deadline is not None and deadline <= now:
            out += f.expire(deadline)
        data, detached = f.feed(chunk, now)
        out += data
        if detached:
            return out, True
    return out + f.expire(now + 1e6), False


@settings(max_examples=300)
@given(st.lists(ATOMS, max_size=30), st.lists(st.integers(0, 10**6), max_size=12))
def test_split_points_do_not_change_the_result(
    atoms: list[tuple[bytes, str]], cuts: list[int]
) -> None:
    data = b"".join(a for a, _ in atoms)
    expected = model(atoms)
    f = DetachFilter(KEYS, timeout=0.0)
    one_shot = f.feed(data, 0.0)
    held = f.pending if not one_shot[1] else b""
    assert (one_shot[0] + held, one_shot[1]) == expected
    f = DetachFilter(KEYS, timeout=0.0)
    split = feed_all(f, chunks_of(data, cuts))
    assert (split[0] + (f.pending if not split[1] else b""), split[1]) == expected


@settings(max_examples=300)
@given(
    st.binary(max_size=60).map(lambda b: b.replace(P, b"p")),
    st.lists(st.integers(0, 10**6), max_size=12),
    st.lists(st.floats(0.0, 1.0), max_size=5),
)
def test_byte_exact_when_the_first_key_never_appears(
    data: bytes, cuts: list[int], gaps: list[float]
) -> None:
    assert feed_timed(DetachFilter(KEYS), chunks_of(data, cuts), gaps) == (data, False)


NOISE = st.binary(max_size=40, min_size=0).map(
    lambda b: bytes(b"\x10\x11\x1b[;:0123456789u~57x"[c % 19] for c in b)
)


@settings(max_examples=500)
@given(NOISE, st.lists(st.integers(0, 10**6), max_size=12))
def test_split_invariance_on_escape_noise(data: bytes, cuts: list[int]) -> None:
    """Noise rich in ESC, digits and separators: a cut never changes what is forwarded."""
    whole = DetachFilter(KEYS, timeout=0.0)
    expected = whole.feed(data, 0.0)
    split = DetachFilter(KEYS, timeout=0.0)
    got = feed_all(split, chunks_of(data, cuts))
    assert got[1] == expected[1]
    if expected[1]:
        assert got[0] == expected[0]
    else:
        assert got[0] + split.pending == expected[0] + whole.pending


def _no_accidental_sequence(atoms: list[tuple[bytes, str]]) -> list[tuple[bytes, str]]:
    """Put an ordinary byte after every first key, so it is neither doubled nor continued."""
    out: list[tuple[bytes, str]] = []
    for atom in atoms:
        out.append(atom)
        if atom[1] == "P":
            out.append((b"x", "O"))
    return out


@settings(max_examples=300)
@given(
    st.lists(ATOMS, max_size=30).map(_no_accidental_sequence),
    st.lists(st.integers(0, 10**6), max_size=12),
    st.lists(st.floats(0.0, 1.0), max_size=5),
)
def test_byte_exact_at_any_timing_without_the_sequence(
    atoms: list[tuple[bytes, str]], cuts: list[int], gaps: list[float]
) -> None:
    data = b"".join(a for a, _ in atoms)
    assert feed_timed(DetachFilter(KEYS), chunks_of(data, cuts), gaps) == (data, False)


@settings(max_examples=300)
@given(
    st.lists(ATOMS, max_size=20).map(_no_accidental_sequence),
    st.sampled_from(P_FORMS),
    st.lists(st.sampled_from(NEUTRAL_FORMS), max_size=2),
    st.sampled_from(Q_FORMS),
    st.binary(max_size=20),
    st.lists(st.integers(0, 10**6), max_size=12),
)
def test_forwarded_is_everything_before_the_sequence(
    before: list[tuple[bytes, str]],
    p: bytes,
    neutrals: list[bytes],
    q: bytes,
    after: bytes,
    cuts: list[int],
) -> None:
    prefix = b"".join(a for a, _ in before)
    data = prefix + p + b"".join(neutrals) + q + after
    assert feed_all(DetachFilter(KEYS), chunks_of(data, cuts)) == (prefix, True)
