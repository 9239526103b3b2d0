"""A real browser for the web pages' tests: Debian's headless Chromium through Playwright."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from playwright.async_api import Browser, async_playwright

import lab as lab_module


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Debian's ``chromium``, headless, with a fresh profile; closed at the end."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=lab_module.CHROMIUM, args=list(lab_module.CHROMIUM_ARGS)
        )
        try:
            yield browser
        finally:
            await browser.close()
