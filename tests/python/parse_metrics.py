"""Parses Prometheus text with prometheus_client's parser (the reference implementation's
Python client) and prints what it understood, for tests/metrics.rs.

    python3 parse_metrics.py FILE

One tab-separated line per family, then one per sample, then `end`:

    family  NAME  TYPE  HELP
    sample  NAME  LABEL=VALUE,LABEL=VALUE  VALUE

Labels are sorted by name. A text the parser rejects exits with its error on stderr.
"""

import sys

from prometheus_client.parser import text_string_to_metric_families


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        text = f.read()
    for family in text_string_to_metric_families(text):
        print("family", family.name, family.type, family.documentation, sep="\t")
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            print("sample", sample.name, labels, repr(sample.value), sep="\t")
    print("end")


main()
