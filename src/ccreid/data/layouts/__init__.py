"""Data-set parsers, keyed by the `layout` name used in params.yaml (datasets.<name>.layout)."""

from ccreid.data.layouts.base import SAMPLE_COLUMNS, ParsedDataset, Protocol, protocols_from_json, protocols_to_json
from ccreid.data.layouts.celeb import parse_celeb
from ccreid.data.layouts.deepchange import parse_deepchange
from ccreid.data.layouts.last import parse_last
from ccreid.data.layouts.ltcc import parse_ltcc
from ccreid.data.layouts.prcc import parse_prcc
from ccreid.data.layouts.vcclothes import parse_vcclothes

PARSERS = {
    "prcc": parse_prcc,
    "ltcc": parse_ltcc,
    "vcclothes": parse_vcclothes,
    "deepchange": parse_deepchange,
    "last": parse_last,
    "celeb": parse_celeb,
    "celeb_light": parse_celeb,  # Celeb-reID-light has Celeb-reID's layout and names
}

__all__ = ["PARSERS", "SAMPLE_COLUMNS", "ParsedDataset", "Protocol", "protocols_from_json", "protocols_to_json"]
