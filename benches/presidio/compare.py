"""Scores Cerberus and Presidio's pattern recognizers on the labelled corpus of `pii-corpus`.

Reads the JSON document `pii-corpus` prints (every sentence, its labels and Cerberus's findings, and
Cerberus's time), runs Presidio's five recognizers for the same kinds on every sentence, and prints
per-kind precision and recall and each detector's speed as a Markdown table.

A finding is right when it overlaps a labelled value of its kind; precision counts right findings
among all findings of a kind, recall labelled values found among all labelled values of the kind.
Presidio's findings count whatever their score (its analyzer's default threshold is 0).
"""

import json
import logging
import sys
import time
from collections import Counter

# Presidio's email recognizer asks tldextract for the public suffix list online, and falls back to the
# copy it ships when it cannot; the failed fetch is logged at length.
logging.disable(logging.CRITICAL)

from presidio_analyzer.predefined_recognizers import (  # noqa: E402
    CreditCardRecognizer,
    EmailRecognizer,
    IpRecognizer,
    PhoneRecognizer,
    UsSsnRecognizer,
)

KINDS = ["pii_ssn", "pii_credit_card", "pii_email", "pii_phone", "pii_ip_address"]
PRESIDIO_KIND = {
    "US_SSN": "pii_ssn",
    "CREDIT_CARD": "pii_credit_card",
    "EMAIL_ADDRESS": "pii_email",
    "PHONE_NUMBER": "pii_phone",
    "IP_ADDRESS": "pii_ip_address",
}


def presidio(sentences):
    """Presidio's findings for every sentence, and the seconds one pass over them takes."""
    recognizers = [
        UsSsnRecognizer(),
        CreditCardRecognizer(),
        EmailRecognizer(),
        PhoneRecognizer(),
        IpRecognizer(),
    ]

    def scan(text):
        found = []
        for recognizer in recognizers:
            for result in recognizer.analyze(
                text, entities=recognizer.supported_entities, nlp_artifacts=None
            ):
                kind = PRESIDIO_KIND.get(result.entity_type)
                if kind:
                    found.append({"kind": kind, "start": result.start, "end": result.end})
        return found

    findings = [scan(s["text"]) for s in sentences]  # the first pass warms caches up
    started = time.perf_counter()
    for s in sentences:
        scan(s["text"])
    return findings, time.perf_counter() - started


def overlaps(a, b):
    return a["kind"] == b["kind"] and a["start"] < b["end"] and b["start"] < a["end"]


def score(sentences, findings):
    """Per kind: (right findings, all findings, labelled values found, labelled values)."""
    right, found, recalled, labelled = Counter(), Counter(), Counter(), Counter()
    for sentence, mine in zip(sentences, findings):
        for finding in mine:
            found[finding["kind"]] += 1
            if any(overlaps(finding, label) for label in sentence["labels"]):
                right[finding["kind"]] += 1
        for label in sentence["labels"]:
            labelled[label["kind"]] += 1
            if any(overlaps(label, finding) for finding in mine):
                recalled[label["kind"]] += 1
    return {k: (right[k], found[k], recalled[k], labelled[k]) for k in KINDS}


def ratio(a, b):
    return f"{a / b:.3f}" if b else "-"


def main():
    document = json.load(open(sys.argv[1]))
    sentences = document["sentences"]
    megabytes = document["bytes"] / 1e6
    presidio_findings, presidio_seconds = presidio(sentences)
    detectors = [
        ("Cerberus", score(sentences, [s["cerberus"] for s in sentences]), document["cerberus_seconds"]),
        ("Presidio", score(sentences, presidio_findings), presidio_seconds),
    ]
    negatives = Counter(s["negative"] for s in sentences if s["negative"])
    print(
        f"{len(sentences)} sentences, {document['bytes']:,} bytes; "
        f"{sum(len(s['labels']) for s in sentences)} labelled values; hard negatives: "
        + ", ".join(f"{n} {k}" for k, n in sorted(negatives.items()))
    )
    print()
    print("| kind | labelled | " + " | ".join(f"{name} precision | {name} recall" for name, _, _ in detectors) + " |")
    print("|---|---|" + "---|---|" * len(detectors))
    for kind in KINDS:
        cells = []
        for _, scores, _ in detectors:
            right, found, recalled, labelled = scores[kind]
            cells += [f"{ratio(right, found)} ({found - right} wrong)", ratio(recalled, labelled)]
        print(f"| {kind} | {detectors[0][1][kind][3]} | " + " | ".join(cells) + " |")
    print()
    print("| detector | time for the corpus | MB/s |")
    print("|---|---|---|")
    for name, _, seconds in detectors:
        print(f"| {name} | {seconds * 1000:.1f} ms | {megabytes / seconds:.2f} |")
    wrong = Counter()
    for sentence, mine in zip(sentences, presidio_findings):
        for finding in mine:
            if not any(overlaps(finding, label) for label in sentence["labels"]):
                wrong[(finding["kind"], sentence["negative"] or "personal data of another kind")] += 1
    cerberus_wrong = Counter()
    for sentence in sentences:
        for finding in sentence["cerberus"]:
            if not any(overlaps(finding, label) for label in sentence["labels"]):
                cerberus_wrong[(finding["kind"], sentence["negative"] or "personal data of another kind")] += 1
    for name, counts in [("Cerberus", cerberus_wrong), ("Presidio", wrong)]:
        print()
        print(f"{name}'s wrong findings, by what the text held: " + (
            ", ".join(f"{n} {kind} in {what}" for (kind, what), n in counts.most_common()) or "none"
        ))


if __name__ == "__main__":
    main()
