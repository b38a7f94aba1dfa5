"""Data-set parsers, keyed by the `layout` name used in params.yaml (datasets.<name>.layout)."""

from ccreid.datasets.base import SAMPLE_COLUMNS, ParsedDataset, Protocol
from ccreid.datasets.celeb import parse_celeb
from ccreid.datasets.deepchange import parse_deepchange
from ccreid.datasets.last import parse_last
from ccreid.datasets.ltcc import parse_ltcc
from ccreid.datasets.prcc import parse_prcc
from ccreid.datasets.vcclothes import parse_vcclothes

PARSERS = {
    "prcc": parse_prcc,
    "ltcc": parse_ltcc,
    "vcclothes": parse_vcclothes,
    "deepchange": parse_deepchange,
    "last": parse_last,
    "celeb": parse_celeb,
    "celeb_light": parse_celeb,  # Celeb-reID-light has Celeb-reID's layout and names
}

__all__ = ["PARSERS", "SAMPLE_COLUMNS", "ParsedDataset", "Protocol"]
