"""The production image, built once per test session (skipped when the build inputs are unchanged).

Another suite reuses it with `from tests.deploy.conftest import image  # noqa: F401` in its
conftest, or calls `tests.deploy.image.build_image()` directly."""

from __future__ import annotations

import pytest

from tests.deploy.image import ImageError, build_image


@pytest.fixture(scope="session")
def image() -> str:
    # Never a skip: these tests are how CI knows the deployable image works.
    try:
        return build_image()
    except ImageError as exc:
        message = str(exc)
    pytest.fail(message, pytrace=False)
