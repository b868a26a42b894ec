#!/usr/bin/env python3
"""gen_corpus.py - Veil's labeled PII corpus (and bulk benchmark text), seeded.

Writes tests/corpus/corpus.txt (mixed free text, one document per line) and
tests/corpus/labels.tsv (`start<TAB>end<TAB>detector`, byte offsets into
corpus.txt, end exclusive). Ground truth comes from construction: every
positive is generated valid (Luhn, mod-97, mod-11, mod-23, Verhoeff, SSN
ranges, octets, JSON headers), every hard negative is generated to look
like PII and not be (ids, UUIDs, digests, timestamps, prices, ISBNs,
invalid Luhn, invalid SSN ranges, versions, and every national id or
secret with its check broken, in its own context).

    gen_corpus.py                       # regenerate tests/corpus/ (seed 4)
    gen_corpus.py --bulk 100 --out F    # ~100 MB of unlabeled mixed text
    gen_corpus.py --bulk 100 --density dense --out F
                                        # PII-dense: a finding every ~60 bytes

Only the standard library; run with the project venv or /usr/bin/python3.
"""
import argparse
import base64
import os
import random
import sys

# ---------------------------------------------------------------- fillers
WORDS = (
    "the customer asked about an order that arrived late and the box was "
    "damaged so we offered a refund after checking the warehouse notes "
    "shipment tracking shows two attempts delivery driver left a message "
    "escalated to tier two agent will follow up tomorrow morning with the "
    "replacement status ticket closed pending confirmation from logistics "
    "invoice reissued with corrected totals the user reported login issues "
    "after the update cleared cache and cookies resolved problem persists "
    "on tablet app version upgrade recommended subscription renewed weekly "
    "plan changed to monthly discount applied loyalty points credited "
    "feedback positive overall rating five stars would recommend service "
    "warehouse team restocked items backorder expected next week note "
    "internal only do not share outside the team meeting scheduled review"
).split()
UNICODE_WORDS = ["José", "Zoë", "Müller", "façade", "naïve", "Łódź",
                 "São Paulo", "北京", "東京", "Αθήνα", "Ærø", "crème brûlée",
                 "résumé", "Straße", "Москва", "emoji 🙂 ok"]
NAMES = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
         "ivan", "judy", "mallory", "niaj", "olivia", "peggy", "rupert",
         "sybil", "trent", "victor", "walter", "yasmin", "zoe", "jose",
         "li", "mohammed", "anna", "lukas", "emma", "noah", "sofia", "liam"]
DOMAINS = ["example.com", "example.org", "mail.example.net", "corp.example.co.uk",
           "test.example.de", "example.io", "sub.mail.example.fr",
           "example-shop.nl", "uni.example.edu", "example.museum"]
SERVICES = ["orders", "billing", "auth", "search", "gateway", "notify",
            "ledger", "profile"]


def filler(rng, lo=3, hi=10):
    words = [rng.choice(WORDS) for _ in range(rng.randint(lo, hi))]
    if rng.random() < 0.15:
        words.insert(rng.randrange(len(words) + 1), rng.choice(UNICODE_WORDS))
    return " ".join(words)


# ---------------------------------------------------------------- positives
def gen_email(rng):
    name = rng.choice(NAMES)
    style = rng.randrange(7)
    if style == 0:
        local = name
    elif style == 1:
        local = name + "." + rng.choice(NAMES)
    elif style == 2:
        local = name + str(rng.randint(1, 9999))
    elif style == 3:
        local = name + "+" + rng.choice(["news", "shop", "tag", "x"])
    elif style == 4:
        local = name + "_" + rng.choice(NAMES)
    elif style == 5:
        local = name + "-" + rng.choice(NAMES)
    else:
        local = name.capitalize() + "." + rng.choice(NAMES).capitalize()
    dom = rng.choice(DOMAINS)
    if rng.random() < 0.1:
        dom = dom.upper()
    return local + "@" + dom


def nanp_parts(rng):
    area = "%d%d%d" % (rng.randint(2, 9), rng.randint(0, 8), rng.randint(0, 9))
    exch = "%d%02d" % (rng.randint(2, 9), rng.randint(0, 99))
    line = "%04d" % rng.randint(0, 9999)
    return area, exch, line


def digits(rng, n):
    return "".join(str(rng.randint(0, 9)) for _ in range(n))


def gen_phone(rng):
    """Phone numbers in E.164 and common national formats."""
    kind = rng.randrange(22)
    a, e, l = nanp_parts(rng)
    if kind == 0:
        return "+1%s%s%s" % (a, e, l)
    if kind == 1:
        return "+1 %s-%s-%s" % (a, e, l)
    if kind == 2:
        return "+1 (%s) %s-%s" % (a, e, l)
    if kind == 3:
        return "(%s) %s-%s" % (a, e, l)
    if kind == 4:
        return "%s-%s-%s" % (a, e, l)
    if kind == 5:
        return "%s.%s.%s" % (a, e, l)
    if kind == 6:
        return "%s %s %s" % (a, e, l)
    if kind == 7:
        return "1-%s-%s-%s" % (a, e, l)
    if kind == 8:   # UK London, E.164 and national
        n = "7946 0%s" % digits(rng, 3)
        return rng.choice(["+44 20 %s" % n, "020 %s" % n, "+44 (0)20 %s" % n])
    if kind == 9:   # UK mobile
        n = "900%s" % digits(rng, 3)
        return rng.choice(["+44 7700 %s" % n, "07700 %s" % n])
    if kind == 10:  # DE Berlin
        n = digits(rng, rng.choice([7, 8]))
        return rng.choice(["+49 30 %s" % n, "030 %s" % n, "030/%s" % n,
                           "(030) %s" % n])
    if kind == 11:  # DE mobile
        n = str(rng.randint(1, 9)) + digits(rng, 7)
        return rng.choice(["+49 151 %s" % n, "0151 %s" % n, "+49 1512 %s" % n[:7]])
    if kind == 12:  # FR
        d = "%d" % rng.randint(1, 7)
        g = [digits(rng, 2) for _ in range(4)]
        return rng.choice(["0%s %s" % (d, " ".join(g)),
                           "0%s.%s" % (d, ".".join(g)),
                           "+33 %s %s" % (d, " ".join(g))])
    if kind == 13:  # NL landline
        n = str(rng.randint(1, 9)) + digits(rng, 6)
        return rng.choice(["020-%s" % n, "020 %s %s" % (n[:3], n[3:]),
                           "+31 20 %s %s" % (n[:3], n[3:])])
    if kind == 14:  # NL mobile
        n = str(rng.randint(1, 9)) + digits(rng, 7)
        return rng.choice(["06-%s" % n, "+31 6 %s" % n, "06 %s" % n])
    if kind == 15:  # other E.164, compact
        cc = rng.choice(["34", "39", "41", "43", "45", "46", "47", "48", "61",
                         "81", "86", "91"])
        return "+" + cc + str(rng.randint(1, 9)) + digits(rng, rng.randint(7, 9))
    if kind == 16:
        cc = rng.choice(["34", "39", "41", "46", "61"])
        return "+%s %d%s %s %s" % (cc, rng.randint(1, 9), digits(rng, 2),
                                   digits(rng, 3), digits(rng, 3))
    if kind == 17:  # US 800 dotted
        return "1.%s.%s.%s" % (a, e, l)
    if kind == 18:
        return "(%s)%s-%s" % (a, e, l)
    if kind == 19:
        return "+1-%s-%s-%s" % (a, e, l)
    if kind == 20:  # UK mobile bare with spaces 5-3-3
        return "07%s %s %s" % (digits(rng, 3), digits(rng, 3), digits(rng, 3))
    return "+44 7%s %s" % (digits(rng, 3), digits(rng, 6))


def gen_phone_bare(rng):
    """A bare 10-digit phone: only a finding next to a context word."""
    a, e, l = nanp_parts(rng)
    return a + e + l


def ssn_parts(rng):
    while True:
        area = rng.randint(1, 899)
        if area != 666:
            break
    return "%03d" % area, "%02d" % rng.randint(1, 99), "%04d" % rng.randint(1, 9999)


def gen_ssn(rng):
    a, g, s = ssn_parts(rng)
    return rng.choice(["%s-%s-%s", "%s-%s-%s", "%s %s %s"]) % (a, g, s)


def luhn_digit(body):
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


CARD_PREFIXES = [("4", 16), ("4", 16), ("4", 13), ("4", 19), ("51", 16),
                 ("53", 16), ("55", 16), ("2221", 16), ("2720", 16),
                 ("34", 15), ("37", 15), ("6011", 16), ("65", 16),
                 ("644", 16), ("3528", 16), ("3589", 16), ("36", 14),
                 ("300", 14), ("62", 16), ("62", 19)]


def card_number(rng, valid=True):
    prefix, length = rng.choice(CARD_PREFIXES)
    body = prefix + digits(rng, length - len(prefix) - 1)
    check = luhn_digit(body)
    if not valid:
        check = str((int(check) + rng.randint(1, 9)) % 10)
    return body + check


def group_card(rng, num):
    sep = rng.choice([" ", "-", ""])
    n = len(num)
    if n == 15:
        groups = [num[:4], num[4:10], num[10:]]
    elif n == 14 and rng.random() < 0.5:
        groups = [num[:4], num[4:10], num[10:]]
    else:
        groups = [num[i:i + 4] for i in range(0, n, 4)]
    return sep.join(groups)


def gen_card(rng):
    return group_card(rng, card_number(rng, True))


IBAN_SPECS = {  # country: (length, BBAN builder)
    "DE": (22, lambda r: digits(r, 18)),
    "GB": (22, lambda r: "".join(r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4)) + digits(r, 14)),
    "FR": (27, lambda r: digits(r, 10) + "".join(r.choice("0123456789ABCDEFGHJK") for _ in range(11)) + digits(r, 2)),
    "NL": (18, lambda r: "".join(r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4)) + digits(r, 10)),
    "ES": (24, lambda r: digits(r, 20)),
    "IT": (27, lambda r: r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") + digits(r, 10) + digits(r, 12)),
    "BE": (16, lambda r: digits(r, 12)),
    "CH": (21, lambda r: digits(r, 17)),
    "AT": (20, lambda r: digits(r, 16)),
    "PL": (28, lambda r: digits(r, 24)),
    "NO": (15, lambda r: digits(r, 11)),
    "SE": (24, lambda r: digits(r, 20)),
    "IE": (22, lambda r: "".join(r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4)) + digits(r, 14)),
    "MT": (31, lambda r: "".join(r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4)) + digits(r, 5) + "".join(r.choice("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(18))),
}


def iban_check(country, bban):
    s = bban + country + "00"
    num = "".join(str(int(c, 36)) for c in s)
    return "%02d" % (98 - int(num) % 97)


def iban_number(rng, valid=True):
    country = rng.choice(sorted(IBAN_SPECS))
    length, build = IBAN_SPECS[country]
    bban = build(rng)
    assert len(bban) == length - 4, country
    check = iban_check(country, bban)
    if not valid:
        check = "%02d" % ((int(check) + rng.randint(1, 90)) % 97 + 2)
        if check == iban_check(country, bban):
            check = "%02d" % ((int(check) + 1) % 97 + 2)
    return country + check + bban


def gen_iban(rng):
    iban = iban_number(rng, True)
    if rng.random() < 0.5:
        return " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))
    return iban


def gen_ipv4(rng):
    kind = rng.randrange(4)
    if kind == 0:
        return "192.168.%d.%d" % (rng.randint(0, 255), rng.randint(1, 254))
    if kind == 1:
        return "10.%d.%d.%d" % (rng.randint(0, 255), rng.randint(0, 255), rng.randint(1, 254))
    if kind == 2:
        return "203.0.113.%d" % rng.randint(1, 254)
    return "%d.%d.%d.%d" % (rng.randint(1, 223), rng.randint(0, 255),
                            rng.randint(0, 255), rng.randint(1, 254))


def hexgroup(rng, full=False):
    v = rng.randint(0, 0xFFFF)
    return "%04x" % v if full else "%x" % v


def gen_ipv6(rng):
    kind = rng.randrange(7)
    if kind == 0:
        return ":".join(hexgroup(rng, True) for _ in range(8))
    if kind == 1:
        return "2001:db8::%s:%s" % (hexgroup(rng), hexgroup(rng))
    if kind == 2:
        return "fe80::%s:%s:%s:%s" % tuple(hexgroup(rng) for _ in range(4))
    if kind == 3:
        return rng.choice(["::1", "fe80::1", "2001:db8::1", "fe80::%s" % hexgroup(rng)])
    if kind == 4:
        return "::ffff:%d.%d.%d.%d" % (rng.randint(1, 223), rng.randint(0, 255),
                                       rng.randint(0, 255), rng.randint(1, 254))
    if kind == 5:
        g = [hexgroup(rng) for _ in range(8)]
        return ":".join(g).upper() if rng.random() < 0.5 else ":".join(g)
    return "2001:db8:%s:%s::%s" % (hexgroup(rng), hexgroup(rng), hexgroup(rng))


# ------------------------------------------------- national ids, secrets
# Each builder makes a value valid by its issuer's rule, or (valid=False)
# the same shape with the check broken: the hard negatives.
UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def other_digit(rng, d):
    return str((int(d) + rng.randint(1, 9)) % 10)


def nhs_number(rng, valid=True):
    while True:
        body = digits(rng, 9)
        total = sum(int(c) * (10 - i) for i, c in enumerate(body))
        check = 11 - total % 11
        if check == 11:
            check = 0
        if check != 10:
            break
    return body + (str(check) if valid else other_digit(rng, str(check)))


def fmt_nhs(rng, n):
    return rng.choice(["%s %s %s", "%s %s %s", "%s-%s-%s", "%s%s%s"]) % (n[:3], n[3:6], n[6:])


def sin_number(rng, valid=True):
    body = rng.choice("12345679") + digits(rng, 7)
    check = luhn_digit(body)
    if not valid:
        if rng.random() < 0.2:   # Luhn-valid, but 8 is no person's
            body = "8" + body[1:]
            return body + luhn_digit(body)
        check = other_digit(rng, check)
    return body + check


def fmt_sin(rng, n):
    return rng.choice(["%s %s %s", "%s-%s-%s", "%s%s%s"]) % (n[:3], n[3:6], n[6:])


def nir_number(rng, valid=True):
    dept = rng.choice(["%02d" % rng.randint(1, 95), "2A", "2B"]) \
        if rng.random() < 0.15 else "%02d" % rng.randint(1, 95)
    body = "%s%02d%02d%s%03d%03d" % (rng.choice("12"), rng.randint(0, 99),
                                     rng.randint(1, 12), dept,
                                     rng.randint(1, 999), rng.randint(1, 999))
    num = int(body.replace("2A", "19").replace("2B", "18"))
    key = 97 - num % 97
    if not valid:
        key = (key + rng.randint(1, 96) - 1) % 97 + 1
    return body + "%02d" % key


def fmt_nir(n):
    return " ".join([n[0], n[1:3], n[3:5], n[5:7], n[7:10], n[10:13], n[13:]])


DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def dni_number(rng, valid=True):
    nie = rng.random() < 0.3
    if nie:
        lead = rng.choice("XYZ")
        num = digits(rng, 7)
        value = int(str("XYZ".index(lead)) + num)
        head = lead + num
    else:
        head = "%08d" % rng.randint(1, 99999999)
        value = int(head)
    letter = DNI_LETTERS[value % 23]
    if not valid:
        letter = rng.choice([c for c in DNI_LETTERS if c != letter])
    return head + letter


def fmt_dni(rng, v):
    if v[0] in "XYZ":
        return rng.choice([v, v, "%s-%s-%s" % (v[0], v[1:8], v[8])])
    return rng.choice([v, v, v[:8] + "-" + v[8],
                       "%s.%s.%s-%s" % (v[:2], v[2:5], v[5:8], v[8])])


FISCAL_ODD = [1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8,
              12, 14, 16, 10, 22, 25, 24, 23]
OMOCODIA = "LMNPQRSTUV"


def fiscal_check(body):
    total = 0
    for i, c in enumerate(body):
        v = int(c) if c.isdigit() else ord(c) - 65
        total += FISCAL_ODD[v] if i % 2 == 0 else v
    return chr(65 + total % 26)


def fiscal_code(rng, valid=True):
    day = rng.randint(1, 28) + rng.choice([0, 40])
    body = "".join(rng.choice(UPPER) for _ in range(6)) + "%02d" % rng.randint(0, 99) + \
        rng.choice("ABCDEHLMPRST") + "%02d" % day + rng.choice("ABCDEFGHILMZ") + digits(rng, 3)
    if rng.random() < 0.005:   # omocodia (rare): the last digit as a letter
        body = body[:14] + OMOCODIA[int(body[14])]
    check = fiscal_check(body)
    if not valid:
        check = rng.choice([c for c in UPPER if c != check])
    return body + check


def bsn_number(rng, valid=True):
    while True:
        body = str(rng.randint(1, 9)) + digits(rng, 7)
        total = sum(int(c) * (9 - i) for i, c in enumerate(body))
        check = total % 11
        if check < 10:
            break
    if not valid:
        check = (check + rng.randint(1, 9)) % 10
        if (total - check) % 11 == 0:
            check = (check + 1) % 10
    return body + str(check)


def fmt_bsn(rng, n):
    return rng.choice([n, n, "%s.%s.%s" % (n[:4], n[4:6], n[6:]), "%s %s %s" % (n[:3], n[3:6], n[6:])])


VERHOEFF_D = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
              [2, 3, 4, 0, 1, 7, 8, 9, 5, 6], [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
              [4, 0, 1, 2, 3, 9, 5, 6, 7, 8], [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
              [6, 5, 9, 8, 7, 1, 0, 4, 3, 2], [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
              [8, 7, 6, 5, 9, 3, 2, 1, 0, 4], [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]]
VERHOEFF_P = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
              [5, 8, 0, 3, 7, 9, 6, 1, 4, 2], [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
              [9, 4, 5, 3, 1, 2, 6, 8, 7, 0], [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
              [2, 7, 9, 3, 8, 0, 6, 4, 1, 5], [7, 0, 4, 6, 9, 1, 3, 2, 5, 8]]
VERHOEFF_INV = [0, 4, 3, 2, 1, 5, 6, 7, 8, 9]


def verhoeff_digit(body):
    c = 0
    for i, ch in enumerate(reversed(body)):
        c = VERHOEFF_D[c][VERHOEFF_P[(i + 1) % 8][int(ch)]]
    return str(VERHOEFF_INV[c])


def aadhaar_number(rng, valid=True):
    body = str(rng.randint(2, 9)) + digits(rng, 10)
    check = verhoeff_digit(body)
    return body + (check if valid else other_digit(rng, check))


def fmt_aadhaar(rng, n):
    return rng.choice(["%s %s %s", "%s %s %s", "%s-%s-%s", "%s%s%s"]) % (n[:4], n[4:8], n[8:])


def pan_number(rng, valid=True):
    holder = rng.choice("PPPPCHFATBLJG") if valid else rng.choice("DEIKMNOQRSUVWXYZ")
    return "".join(rng.choice(UPPER) for _ in range(3)) + holder + rng.choice(UPPER) + \
        "%04d" % rng.randint(1, 9999) + rng.choice(UPPER)


def cpf_number(rng, valid=True):
    body = digits(rng, 9)
    while len(set(body)) == 1:
        body = digits(rng, 9)
    for k in (9, 10):
        dv = sum(int(c) * (k + 1 - i) for i, c in enumerate(body)) * 10 % 11
        body += str(0 if dv == 10 else dv)
    if not valid:
        body = body[:10] + other_digit(rng, body[10])
    return body


def fmt_cpf(n):
    return "%s.%s.%s-%s" % (n[:3], n[3:6], n[6:9], n[9:])


BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def aws_key(rng, valid=True):
    prefix = rng.choice(["AKIA", "AKIA", "ASIA"])
    if valid:
        return prefix + "".join(rng.choice(BASE32) for _ in range(16))
    kind = rng.randrange(3)
    if kind == 0:   # one short
        return prefix + "".join(rng.choice(BASE32) for _ in range(15))
    if kind == 1:   # one long
        return prefix + "".join(rng.choice(BASE32) for _ in range(17))
    # outside base32's alphabet
    body = [rng.choice(BASE32) for _ in range(16)]
    body[rng.randrange(16)] = rng.choice("01890")
    return prefix + "".join(body)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwt_token(rng, valid=True):
    alg = rng.choice(["HS256", "RS256", "ES256", "HS512"])
    if valid:
        header = '{"alg":"%s","typ":"JWT"}' % alg
        if rng.random() < 0.3:
            header = '{"typ":"JWT","alg":"%s","kid":"k%d"}' % (alg, rng.randint(1, 99))
    else:
        header = rng.choice(['{"typ":"JWT"}', '{"alg":%d,"typ":"JWT"}' % rng.randint(1, 9),
                             '{"alg":"%s","typ":"JWT"' % alg, '["alg","%s"]' % alg])
    payload = '{"sub":"%s","iat":%d,"exp":%d}' % (rng.choice(NAMES), rng.randint(1600000000, 1800000000),
                                                 rng.randint(1800000000, 1900000000))
    sig = b64url(bytes(rng.getrandbits(8) for _ in range(rng.choice([32, 64]))))
    return "%s.%s.%s" % (b64url(header.encode()), b64url(payload.encode()), sig)


def gen_nhs(rng):
    return fmt_nhs(rng, nhs_number(rng))


def gen_sin(rng):
    return fmt_sin(rng, sin_number(rng))


def gen_nir(rng):
    return fmt_nir(nir_number(rng))


def gen_dni(rng):
    return fmt_dni(rng, dni_number(rng))


def gen_fiscal(rng):
    return fiscal_code(rng)


def gen_bsn(rng):
    return fmt_bsn(rng, bsn_number(rng))


def gen_aadhaar(rng):
    return fmt_aadhaar(rng, aadhaar_number(rng))


def gen_pan(rng):
    return pan_number(rng)


def gen_cpf(rng):
    return fmt_cpf(cpf_number(rng))


def gen_aws(rng):
    return aws_key(rng)


def gen_jwt(rng):
    return jwt_token(rng)


# the bare forms that several ids share: only ever written after a word of
# their context
BARE_FORMS = {
    "br_cpf": lambda r: cpf_number(r),
    "fr_nir": lambda r: nir_number(r),
}


# ---------------------------------------------------------------- negatives
def neg_uuid(rng):
    h = "%032x" % rng.getrandbits(128)
    return "%s-%s-4%s-a%s-%s" % (h[:8], h[8:12], h[13:16], h[17:20], h[20:])


def neg_digest(rng):
    return ("%064x" % rng.getrandbits(256))[:rng.choice([7, 12, 32, 40, 64])]


def neg_timestamp(rng):
    y, mo, d = rng.randint(2015, 2030), rng.randint(1, 12), rng.randint(1, 28)
    h, mi, s = rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59)
    kind = rng.randrange(7)
    if kind == 0:
        return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (y, mo, d, h, mi, s, rng.randint(0, 999))
    if kind == 1:
        return "%04d-%02d-%02d %02d:%02d:%02d" % (y, mo, d, h, mi, s)
    if kind == 2:
        return "%04d-%02d-%02dT%02d:%02d:%02d+01:00" % (y, mo, d, h, mi, s)
    if kind == 3:
        return "%02d/%02d/%04d %02d:%02d" % (d, mo, y, h, mi)
    if kind == 4:
        return str(rng.randint(1500000000, 1900000000))   # epoch seconds
    if kind == 5:
        return str(rng.randint(1500000000000, 1900000000000))  # epoch ms
    return "%02d.%02d.%04d" % (d, mo, y)


def neg_price(rng):
    kind = rng.randrange(6)
    if kind == 0:
        return "$%d,%03d.%02d" % (rng.randint(1, 999), rng.randint(0, 999), rng.randint(0, 99))
    if kind == 1:
        return "EUR %d.%02d" % (rng.randint(1, 9999), rng.randint(0, 99))
    if kind == 2:
        return "%d %03d,%02d €" % (rng.randint(1, 999), rng.randint(0, 999), rng.randint(0, 99))
    if kind == 3:
        return "USD %d %03d %03d.00" % (rng.randint(1, 999), rng.randint(0, 999), rng.randint(0, 999))
    if kind == 4:
        return "£%d.%02d" % (rng.randint(1, 500), rng.randint(0, 99))
    return "%d.%03d.%03d,%02d EUR" % (rng.randint(1, 99), rng.randint(0, 999), rng.randint(0, 999), rng.randint(0, 99))


def isbn13(rng):
    body = "978" + digits(rng, 9)
    total = sum(int(c) * (1 if i % 2 == 0 else 3) for i, c in enumerate(body))
    return body + str((10 - total % 10) % 10)


def neg_isbn(rng):
    b = isbn13(rng)
    kind = rng.randrange(3)
    if kind == 0:
        return "ISBN %s-%s-%s-%s-%s" % (b[:3], b[3], b[4:6], b[6:12], b[12])
    if kind == 1:
        return "ISBN " + b
    body = "0" + digits(rng, 8)
    total = sum(int(c) * (10 - i) for i, c in enumerate(body))
    check = (11 - total % 11) % 11
    return "ISBN %s-%s-%s-%s" % (body[0], body[1:4], body[4:9], "X" if check == 10 else str(check))


def neg_invalid_card(rng):
    return group_card(rng, card_number(rng, False))


def neg_invalid_ssn(rng):
    kind = rng.randrange(5)
    a, g, s = ssn_parts(rng)
    if kind == 0:
        a = "000"
    elif kind == 1:
        a = "666"
    elif kind == 2:
        a = "%d" % rng.randint(900, 999)
    elif kind == 3:
        g = "00"
    else:
        s = "0000"
    return "%s-%s-%s" % (a, g, s)


def neg_version(rng):
    kind = rng.randrange(6)
    if kind == 0:
        return "v%d.%d.%d" % (rng.randint(0, 20), rng.randint(0, 40), rng.randint(0, 99))
    if kind == 1:
        return "%d.%d.%d" % (rng.randint(0, 20), rng.randint(0, 40), rng.randint(0, 99))
    if kind == 2:
        return "%d.%d.%d-%d-amd64" % (rng.randint(3, 6), rng.randint(0, 19), rng.randint(0, 200), rng.randint(1, 30))
    if kind == 3:
        return "v%d.%d.%d.%d" % (rng.randint(1, 9), rng.randint(0, 9), rng.randint(0, 9), rng.randint(0, 999))
    if kind == 4:
        return "10.0.%d.%d" % (rng.randint(10000, 22000), rng.randint(256, 3000))  # windows build
    return "%d.%d.%d.post%d" % (rng.randint(0, 9), rng.randint(0, 9), rng.randint(0, 9), rng.randint(1, 9))


def neg_id(rng):
    kind = rng.randrange(8)
    if kind == 0:
        return "ORD-%d-%06d" % (rng.randint(2015, 2030), rng.randint(0, 999999))
    if kind == 1:
        return "INV%08d" % rng.randint(0, 99999999)
    if kind == 2:
        return str(rng.randint(100000000, 999999999))           # bare 9 digits
    if kind == 3:
        return str(rng.randint(2000000000, 9999999999))         # bare 10 digits
    if kind == 4:
        return "cust_%d" % rng.randint(1, 10 ** 7)
    if kind == 5:
        return "#%d" % rng.randint(1, 10 ** 6)
    if kind == 6:
        return "TRK%s" % digits(rng, 12)
    return "PO-%s-%s" % (digits(rng, 4), digits(rng, 4))


def neg_misc(rng):
    kind = rng.randrange(9)
    if kind == 0:   # invalid octets
        return "%d.%d.%d.%d" % (rng.randint(256, 999), rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255))
    if kind == 1:
        return "192.168.1.%d" % rng.randint(256, 999)
    if kind == 2:   # invalid IBAN checksum
        return iban_number(rng, False)
    if kind == 3:   # MAC address
        return ":".join("%02x" % rng.randint(0, 255) for _ in range(6))
    if kind == 4:   # clock times
        return "%02d:%02d:%02d" % (rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59))
    if kind == 5:   # C++ scope
        return rng.choice(["std::vector", "Foo::bar()", "a::b::c", "ns::Type"])
    if kind == 6:   # dotted quad with 5 parts
        return "1.%d.%d.%d.%d" % tuple(rng.randint(0, 255) for _ in range(4))
    if kind == 7:   # hex colour / email-ish but not an email
        return rng.choice(["#ff00aa", "user at example dot com", "@handle",
                           "foo@bar", "name@localhost"])
    return "%d%%" % rng.randint(1, 100)


def neg_lookalike(rng):
    """Shapes one step away from a detector's: wrong ranges, lengths,
    issuers or forms."""
    kind = rng.randrange(12)
    if kind == 0:   # NANP area code cannot start with 1
        return "(1%02d) %d%02d-%04d" % (rng.randint(0, 99),
                                         rng.randint(2, 9), rng.randint(0, 99), rng.randint(0, 9999))
    if kind == 1:   # 3-3-3 is not an SSN
        return "%03d-%03d-%03d" % (rng.randint(1, 899), rng.randint(0, 999), rng.randint(0, 999))
    if kind == 2:   # Luhn-valid but no card network starts with 1, 7, 8 or 9
        body = rng.choice("1789") + digits(rng, 14)
        return body + luhn_digit(body)
    if kind == 3:   # 20-digit reference
        return rng.choice("123456789") + digits(rng, 19)
    if kind == 4:   # unknown IBAN country
        return "XX%02d %s %s %s %s" % (rng.randint(2, 98), digits(rng, 4), digits(rng, 4),
                                       digits(rng, 4), digits(rng, 4))
    if kind == 5:
        return rng.choice(["john@example", "a@b.c", "x@@y.com", "name@.com"])
    if kind == 6:   # coordinates
        return "%d.%04d, %d.%04d" % (rng.randint(-80, 80), rng.randint(0, 9999),
                                     rng.randint(-170, 170), rng.randint(0, 9999))
    if kind == 7:   # dotted dates and semver ranges
        return rng.choice(["%04d.%02d.%02d" % (rng.randint(2000, 2030), rng.randint(1, 12), rng.randint(1, 28)),
                           "%d.%d.%d-%d.%d.%d" % tuple(rng.randint(0, 20) for _ in range(6))])
    if kind == 8:   # thousands separators
        return "%d,%03d,%03d,%03d" % (rng.randint(1, 999), rng.randint(0, 999),
                                      rng.randint(0, 999), rng.randint(0, 999))
    if kind == 9:   # digits glued to hex
        return digits(rng, 10) + ("%x" % rng.getrandbits(40))
    if kind == 10:  # phone-like with too few digits
        return "%d%02d-%04d" % (rng.randint(2, 9), rng.randint(0, 99), rng.randint(0, 9999))
    return "ext. %d" % rng.randint(100, 99999)


def neg_national(rng):
    """A national id or secret in its own context, with the check broken:
    same shape, same words around it, not a finding (and never a phone)."""
    det = rng.choice(sorted(INVALID))
    return rng.choice(CONTEXT[det]) + " " + INVALID[det](rng)


INVALID = {
    "uk_nhs": lambda r: fmt_nhs(r, nhs_number(r, False)),
    "ca_sin": lambda r: fmt_sin(r, sin_number(r, False)),
    "fr_nir": lambda r: rng_pick(r, fmt_nir(nir_number(r, False)), nir_number(r, False)),
    "es_dni": lambda r: fmt_dni(r, dni_number(r, False)),
    "it_fiscal_code": lambda r: fiscal_code(r, False),
    "nl_bsn": lambda r: fmt_bsn(r, bsn_number(r, False)),
    "in_aadhaar": lambda r: fmt_aadhaar(r, aadhaar_number(r, False)),
    "in_pan": lambda r: pan_number(r, False),
    "br_cpf": lambda r: rng_pick(r, fmt_cpf(cpf_number(r, False)), cpf_number(r, False)),
    "aws_access_key": lambda r: aws_key(r, False),
    "jwt": lambda r: jwt_token(r, False),
}


def rng_pick(rng, *choices):
    return rng.choice(choices)


NEGATIVES = [neg_lookalike, neg_uuid, neg_digest, neg_timestamp, neg_price, neg_isbn,
             neg_invalid_card, neg_invalid_ssn, neg_version, neg_id, neg_misc,
             neg_national, neg_national]

# context words a positive may carry (weak shapes need one)
CONTEXT = {
    "email": ["email", "e-mail", "contact", "reach"],
    "phone": ["phone", "tel", "call", "mobile", "cell"],
    "us_ssn": ["SSN", "ssn", "social security number"],
    "credit_card": ["card", "credit card", "visa", "payment card"],
    "iban": ["IBAN", "iban", "bank account", "account"],
    "ipv4": ["ip", "host", "from", "client"],
    "ipv6": ["ip", "address", "from", "peer"],
    "uk_nhs": ["NHS number", "NHS no.", "NHS", "rhif GIG"],
    "ca_sin": ["SIN", "social insurance number", "NAS", "numéro d'assurance sociale"],
    "fr_nir": ["NIR", "numéro de sécurité sociale", "n° INSEE", "carte Vitale"],
    "es_dni": ["DNI", "NIE", "NIF", "documento de identidad"],
    "it_fiscal_code": ["codice fiscale", "CF", "cod. fiscale"],
    "nl_bsn": ["BSN", "burgerservicenummer", "BSN-nummer", "sofinummer"],
    "in_aadhaar": ["Aadhaar", "Aadhaar no.", "UID", "आधार संख्या"],
    "in_pan": ["PAN", "PAN card", "permanent account number"],
    "br_cpf": ["CPF", "CPF nº", "cadastro de pessoas físicas"],
    "aws_access_key": ["aws_access_key_id", "AWS key", "access key"],
    "jwt": ["token", "Bearer", "Authorization: Bearer", "jwt"],
}
GENERATORS = {
    "email": gen_email, "phone": gen_phone, "us_ssn": gen_ssn,
    "credit_card": gen_card, "iban": gen_iban, "ipv4": gen_ipv4,
    "ipv6": gen_ipv6,
    "uk_nhs": gen_nhs, "ca_sin": gen_sin, "fr_nir": gen_nir, "es_dni": gen_dni,
    "it_fiscal_code": gen_fiscal, "nl_bsn": gen_bsn, "in_aadhaar": gen_aadhaar,
    "in_pan": gen_pan, "br_cpf": gen_cpf, "aws_access_key": gen_aws, "jwt": gen_jwt,
}
# identifiers that are only digits shared with others: always in context
NEEDS_CONTEXT = {"uk_nhs", "ca_sin", "nl_bsn", "in_aadhaar"}
LOG_KEYS = {"email": "email", "phone": "phone", "us_ssn": "ssn",
            "credit_card": "card", "iban": "iban", "ipv4": "client_ip",
            "ipv6": "peer", "uk_nhs": "nhs_number", "ca_sin": "sin",
            "fr_nir": "nir", "es_dni": "dni", "it_fiscal_code": "codice_fiscale",
            "nl_bsn": "bsn", "in_aadhaar": "aadhaar", "in_pan": "pan",
            "br_cpf": "cpf", "aws_access_key": "aws_access_key_id", "jwt": "token"}


# ---------------------------------------------------------------- documents
class Doc:
    """One line of text under construction with its labels."""

    def __init__(self):
        self.parts = []
        self.labels = []   # (start, end, detector) in bytes, line-relative
        self.size = 0

    def add(self, text, detector=None):
        b = text.encode("utf-8")
        if detector:
            self.labels.append((self.size, self.size + len(b), detector))
        self.parts.append(b)
        self.size += len(b)

    def text(self):
        return b"".join(self.parts)


def positive_doc(rng, det):
    doc = Doc()
    value_gen = GENERATORS[det]
    shape = rng.randrange(6)
    ctx = rng.choice(CONTEXT[det])
    # weak shapes: bare 9-digit SSNs and bare 10-digit phones, always with
    # a context word right before them
    if det == "us_ssn" and rng.random() < 0.15:
        a, g, s = ssn_parts(rng)
        doc.add(filler(rng, 1, 4) + " " + rng.choice(["SSN", "ssn:", "social security no."]) + " ")
        doc.add(a + g + s, det)
        doc.add(" " + filler(rng, 1, 4))
        return doc
    if det == "phone" and rng.random() < 0.1:
        doc.add(filler(rng, 1, 4) + " " + rng.choice(["phone", "tel:", "call", "mobile"]) + " ")
        doc.add(gen_phone_bare(rng), det)
        doc.add(" " + filler(rng, 1, 4))
        return doc
    if det in BARE_FORMS and rng.random() < 0.3:
        doc.add(filler(rng, 1, 4) + " " + ctx + ": ")
        doc.add(BARE_FORMS[det](rng), det)
        doc.add(" " + filler(rng, 1, 4))
        return doc
    if det in NEEDS_CONTEXT:
        shape = rng.choice([0, 2, 4])
    value = value_gen(rng)
    if shape == 0:
        doc.add(filler(rng) + " " + ctx + " ")
        doc.add(value, det)
        doc.add(" " + filler(rng))
    elif shape == 1:
        doc.add(filler(rng) + " (")
        doc.add(value, det)
        doc.add(") " + filler(rng) + ".")
    elif shape == 2:
        doc.add(ctx + ": ")
        doc.add(value, det)
        doc.add(", " + filler(rng))
    elif shape == 3:
        doc.add(filler(rng) + " ")
        doc.add(value, det)
        doc.add(".")
    elif shape == 4:   # key=value log line
        doc.add("%s INFO [svc-%s] %s=" % (neg_timestamp(rng), rng.choice(SERVICES),
                                          LOG_KEYS[det]))
        doc.add(value, det)
        doc.add(" request_id=%s status=%d" % (neg_uuid(rng), rng.choice([200, 201, 404, 500])))
    else:              # CSV row
        doc.add("%d,%s," % (rng.randint(1, 99999), rng.choice(NAMES)))
        doc.add(value, det)
        doc.add(",%s,%s" % (neg_timestamp(rng), neg_price(rng).replace(",", "")))
    # decorations around addresses
    if det == "ipv4" and rng.random() < 0.2:
        doc = Doc()
        ip = gen_ipv4(rng)
        form = rng.randrange(3)
        doc.add(filler(rng) + " ")
        doc.add(ip, det)
        doc.add([":%d" % rng.randint(1, 65535), "/%d" % rng.randint(8, 32), ""][form] + " " + filler(rng))
    if det == "ipv6" and rng.random() < 0.2:
        doc = Doc()
        ip = gen_ipv6(rng)
        doc.add(filler(rng) + " [")
        doc.add(ip, det)
        doc.add("]:%d %s" % (rng.randint(1, 65535), filler(rng)))
    if det == "email" and rng.random() < 0.2:
        doc = Doc()
        doc.add(filler(rng) + rng.choice([" <", " mailto:", " "]))
        doc.add(gen_email(rng), det)
        doc.add(rng.choice(["> ", " ", "; "]) + filler(rng))
    return doc


def negative_doc(rng):
    doc = Doc()
    n = rng.randint(1, 3)
    for _ in range(n):
        neg = rng.choice(NEGATIVES)(rng)
        doc.add(filler(rng, 2, 6) + " " + neg + " ")
    doc.add(filler(rng, 1, 4))
    return doc


def mixed_doc(rng):
    """A support note with two to four PII values and some negatives."""
    doc = Doc()
    dets = rng.sample(sorted(GENERATORS), rng.randint(2, 4))
    # a negative never sits within a few words after a context word: a
    # bare number right after "phone" is a phone by design
    for det in dets:
        doc.add(filler(rng, 4, 6) + " " + rng.choice(NEGATIVES)(rng) + " ")
        doc.add(filler(rng, 2, 4) + " " + rng.choice(CONTEXT[det]) + " ")
        doc.add(GENERATORS[det](rng), det)
        doc.add(" ")
    doc.add(filler(rng, 1, 3))
    return doc


def generate(rng, n_docs):
    per_det = {}
    docs = []
    dets = sorted(GENERATORS)
    for i in range(n_docs):
        r = rng.random()
        if r < 0.45:
            docs.append(positive_doc(rng, dets[i % len(dets)]))
        elif r < 0.65:
            docs.append(mixed_doc(rng))
        elif r < 0.95:
            docs.append(negative_doc(rng))
        else:
            d = Doc()
            d.add(filler(rng, 5, 15))
            docs.append(d)
    for d in docs:
        for _, _, det in d.labels:
            per_det[det] = per_det.get(det, 0) + 1
    return docs, per_det


def write_corpus(outdir, seed, n_docs):
    rng = random.Random(seed)
    docs, per_det = generate(rng, n_docs)
    os.makedirs(outdir, exist_ok=True)
    off = 0
    with open(os.path.join(outdir, "corpus.txt"), "wb") as ft, \
            open(os.path.join(outdir, "labels.tsv"), "w") as fl:
        fl.write("# start\tend\tdetector (byte offsets into corpus.txt; "
                 "generated by scripts/gen_corpus.py --seed %d)\n" % seed)
        for d in docs:
            text = d.text()
            assert b"\n" not in text
            for s, e, det in d.labels:
                fl.write("%d\t%d\t%s\n" % (off + s, off + e, det))
            ft.write(text + b"\n")
            off += len(text) + 1
    print("corpus: %d docs, %d bytes; positives %s" %
          (len(docs), off, " ".join("%s=%d" % kv for kv in sorted(per_det.items()))))


# Dense bulk text: support tickets, payment notes and logs in five
# languages, a PII value every ~60 bytes. Only the words around the values
# live here; the values come from GENERATORS, whatever detectors it holds.
DENSE_WORDS = {
    "en": "customer asked refund order late please update account thanks "
          "ticket reopened agent will call back".split(),
    "de": "Kunde bittet Rückerstattung Bestellung verspätet bitte Konto "
          "aktualisieren danke Rückruf morgen".split(),
    "fr": "client demande remboursement commande retard merci mettre à jour "
          "compte rappel demain".split(),
    "es": "cliente pide reembolso pedido retrasado por favor actualizar "
          "cuenta gracias llamada mañana".split(),
    "ja": "お客様 返金 注文 遅延 確認 お願いします 口座 更新 折り返し 明日".split(),
}


def dense_lines(rng, n_lines):
    langs = sorted(DENSE_WORDS)
    dets = sorted(GENERATORS)
    lines = []
    for _ in range(n_lines):
        words = DENSE_WORDS[rng.choice(langs)]
        kind = rng.randrange(3)
        parts = []
        if kind == 2:      # a log line: key=value pairs
            parts.append("%s INFO [svc-%s]" % (neg_timestamp(rng),
                                               rng.choice(SERVICES)))
        elif kind == 1:    # a payment note
            parts.append("#%d %s" % (rng.randint(1000, 99999),
                                     " ".join(rng.sample(words, 2))))
        else:              # a support ticket
            parts.append(" ".join(rng.sample(words, 3)))
        for _ in range(rng.randint(1, 4)):
            det = rng.choice(dets)
            ctx = rng.choice(CONTEXT[det])
            if kind == 2:
                parts.append("%s=%s" % (ctx.replace(" ", "_"),
                                        GENERATORS[det](rng)))
            else:
                parts.append("%s %s: %s," % (" ".join(rng.sample(words, 2)),
                                             ctx, GENERATORS[det](rng)))
        parts.append(" ".join(rng.sample(words, 2)))
        lines.append(" ".join(parts).encode("utf-8") + b"\n")
    return lines


def write_bulk(path, seed, megabytes, density="sparse"):
    """Text for the benchmark: ~4 MB of unique documents, repeated with a
    rotating start until the size is reached (throughput does not depend on
    the text being unique, only on its mix). sparse: the labelled corpus's
    mix (a finding per ~140 bytes); dense: dense_lines()."""
    rng = random.Random(seed)
    if density == "dense":
        lines = dense_lines(rng, 40000)
    else:
        docs, _ = generate(rng, 40000)
        lines = [d.text() + b"\n" for d in docs]
    target = megabytes * 1024 * 1024
    written = 0
    with open(path, "wb") as f:
        rot = 0
        while written < target:
            chunk = b"".join(lines[rot:] + lines[:rot])
            f.write(chunk)
            written += len(chunk)
            rot = (rot + 7919) % len(lines)
    print("bulk: %s %d bytes (%s)" % (path, written, density))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=4)
    ap.add_argument("--docs", type=int, default=6000)
    ap.add_argument("--outdir", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "corpus"))
    ap.add_argument("--bulk", type=int, metavar="MB",
                    help="write MB of unlabeled mixed text to --out instead")
    ap.add_argument("--out")
    ap.add_argument("--density", choices=("sparse", "dense"), default="sparse",
                    help="--bulk text: the labelled corpus's mix (sparse) or "
                         "a finding every ~60 bytes (dense)")
    args = ap.parse_args()
    if args.bulk:
        if not args.out:
            ap.error("--bulk needs --out FILE")
        write_bulk(args.out, args.seed, args.bulk, args.density)
    else:
        write_corpus(os.path.normpath(args.outdir), args.seed, args.docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
