"""The shared PII detectors (feilun.governance.pii), against independent check-digit references."""

from __future__ import annotations

import datetime
import json
import random
from pathlib import Path

from feilun.governance.pii import find_pii, is_luhn_valid, is_valid_id_card, mask_pii

DATA = Path("../shared/data")
PROVINCES = [11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46]
PROVINCES += [50, 51, 52, 53, 54, 61, 62, 63, 64, 65]


# Independent references: ISO 7064 MOD 11-2 computed the iterative way (the operator uses the
# weighted sum of GB 11643), and Luhn's check digit computed with divmod.
def iso7064_check(body: str) -> str:
    p = 0
    for ch in body:
        p = ((p + int(ch)) * 2) % 11
    check = (12 - p) % 11
    return "X" if check == 10 else str(check)


def luhn_complete(payload: str) -> str:
    total = 0
    for i, d in enumerate(int(c) for c in reversed(payload + "0")):
        total += sum(divmod(d * 2, 10)) if i % 2 else d
    return payload + str((10 - total % 10) % 10)


def random_id(rng: random.Random) -> str:
    born = datetime.date(1930, 1, 1) + datetime.timedelta(days=rng.randrange(365 * 90))
    body = (
        f"{rng.choice(PROVINCES)}{rng.randrange(10000):04d}{born:%Y%m%d}{rng.randrange(1000):03d}"
    )
    return body + iso7064_check(body)


def random_card(rng: random.Random) -> str:
    prefix, length = rng.choice([("4", 16), ("51", 16), ("62", 16), ("62", 19), ("37", 15)])
    payload = prefix + "".join(str(rng.randrange(10)) for _ in range(length - len(prefix) - 1))
    return luhn_complete(payload)


def kinds(text: str) -> list[tuple[str, str]]:
    return [(text[m.start : m.end], m.kind) for m in find_pii(text)]


def test_generated_resident_ids_are_found_and_bad_check_digits_are_not() -> None:
    rng = random.Random(20240611)
    ids = [random_id(rng) for _ in range(500)]
    assert any(i.endswith("X") for i in ids)
    for number in ids:
        assert is_valid_id_card(number), number
        assert kinds(f"身份证号：{number}。") == [(number, "id_card")]
        assert kinds(f"ID {number.lower()}") == [(number.lower(), "id_card")]
        wrong = number[:17] + rng.choice([c for c in "0123456789X" if c != number[17]])
        # An 18-digit number shaped like an ID with a wrong check digit is nothing at all
        # (neither an ID nor, by chance of Luhn, a bank card).
        assert kinds(f"订单号{wrong}已发货") == [], wrong
    assert is_valid_id_card("11010519491231002X")  # the sample number of GB 11643


def test_ids_with_impossible_region_or_date_are_not_pii() -> None:
    body = "11010519490230123"  # 30 February
    assert kinds(body + iso7064_check(body)) == []
    body = "99010519491231002"  # no province 99
    assert kinds(body + iso7064_check(body)) == []
    number = random_id(random.Random(1))
    assert kinds("9" + number) == [] and kinds(number + "1") == []  # inside a longer run


def test_bank_cards_with_luhn_and_separators() -> None:
    rng = random.Random(7)
    for card in [random_card(rng) for _ in range(300)]:
        assert is_luhn_valid(card)
        assert kinds(f"卡号{card}") == [(card, "bank_card")]
        if len(card) == 16:
            spaced = " ".join(card[i : i + 4] for i in range(0, 16, 4))
            assert kinds(f"card: {spaced}.") == [(spaced, "bank_card")]
            dashed = spaced.replace(" ", "-")
            assert kinds(dashed) == [(dashed, "bank_card")]
        bad = card[:-1] + str((int(card[-1]) + 1) % 10)
        assert kinds(f"卡号{bad}") == []
    for public_test_number in ("4111111111111111", "5500000000000004", "378282246310005"):
        assert kinds(public_test_number) == [(public_test_number, "bank_card")]


def test_mobile_numbers_with_prefixes_and_separators() -> None:
    for text in ("13812345678", "+86 138 1234 5678", "86-138-1234-5678", "0086 19912345678"):
        assert kinds(f"电话：{text}，") == [(text, "mobile")]
    assert kinds("手机+8613812345678") == [("+8613812345678", "mobile")]
    for not_mobile in ("12345678901", "1381234567", "2013812345678901", "No.138123456789"):
        assert kinds(not_mobile) == [], not_mobile


def test_landlines_and_dates() -> None:
    for text in ("010-62345678", "0571 88886666", "(0755)23456789", "(0755) 2345678"):
        assert kinds(f"电话{text}转") == [(text, "landline")]
    for not_landline in ("2023-01-01", "2023-01-01 12:00:00", "0571-123", "010-12345678"):
        assert kinds(not_landline) == [], not_landline


def test_emails() -> None:
    text = "联系 zhang.san+tag@mail.example.com.cn 或 13812345678@163.com。"
    assert kinds(text) == [
        ("zhang.san+tag@mail.example.com.cn", "email"),
        ("13812345678@163.com", "email"),  # the whole address, not the mobile inside it
    ]
    assert kinds("user@localhost and a@b.c") == []


def test_ip_addresses_and_version_numbers() -> None:
    text = "服务器192.168.1.1与10.0.0.255相连，DNS 8.8.8.8."
    assert [k for _, k in kinds(text)] == ["ip", "ip", "ip"]
    assert kinds("IPv6 2001:db8::1 and fe80::1ff:fe23:4567:890a") == [
        ("2001:db8::1", "ip"),
        ("fe80::1ff:fe23:4567:890a", "ip"),
    ]
    for not_ip in (
        "1.2.3.400",
        "256.1.1.1",
        "v1.2.3.4",
        "version 10.1.2.3",
        "版本：1.2.3.4",
        "1.2.3.4.5",
        "EC 1.14.16.2",
        "12:30:45",
        "std::vector",
        "00:1a:2b:3c:4d:5e",
    ):
        assert kinds(not_ip) == [], not_ip


def test_real_text_has_no_false_positives() -> None:
    texts = [p.read_text(encoding="utf-8") for p in sorted((DATA / "industry/docs").rglob("*.md"))]
    for name in ("xquad/xquad.zh.jsonl", "xquad/xquad.en.jsonl", "cmrc2018/trial.jsonl"):
        with (DATA / name).open(encoding="utf-8") as f:
            texts += sorted({json.loads(line)["context"] for line in f})
    with (DATA / "scifact" / "corpus.jsonl").open(encoding="utf-8") as f:
        texts += [json.loads(line)["text"] for line in f]  # abstracts full of numbers
    assert sum(len(t) for t in texts) > 2_000_000
    assert [kinds(t) for t in texts if find_pii(t)] == []


def test_mask_pii_replaces_each_kind_and_leaves_clean_text_alone() -> None:
    text = "手机13812345678，邮箱a.b@example.com，卡号4111111111111111"
    assert mask_pii(text) == "手机[手机号]，邮箱[邮箱]，卡号[银行卡号]"
    assert mask_pii("call 13812345678", language="en") == "call [MOBILE]"
    clean = "版本 1.2.3.4 发布于 2024-01-01"
    assert mask_pii(clean) is clean


def test_the_pre_check_skips_only_text_no_pattern_could_match() -> None:
    assert find_pii("请联系张三，地址在兰山市") == []
    assert [m.kind for m in find_pii("mail ops@lanshan-gas.cn")] == ["email"]
    assert [m.kind for m in find_pii("host dead:beef::cafe")] == ["ip"]  # no digit at all
