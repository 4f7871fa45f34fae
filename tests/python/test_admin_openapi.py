"""The admin API's OpenAPI document, as `cerberus openapi` prints it and `/openapi.json` serves it, is a
valid OpenAPI 3.1 document (checked by openapi-spec-validator, not by the code that wrote it)."""

import json
import subprocess
from pathlib import Path

from openapi_spec_validator import validate


def test_the_admin_openapi_document_is_valid(binaries: Path) -> None:
    printed = subprocess.run([str(binaries / "cerberus"), "openapi"], check=True, capture_output=True)
    document = json.loads(printed.stdout)
    validate(document)
    assert document["openapi"].startswith("3.1")
    operations = [op for path in document["paths"].values() for op in path.values()]
    assert len(operations) == 53, "every admin operation is described"
    secured = [op for op in operations if op.get("security")]
    assert len(secured) == 50, "all but login, refresh and logout need the bearer token"
