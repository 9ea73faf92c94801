"""The application module a Lambda function imports: ``blog.app`` with ``register(bus)``."""

import sys
import types

from messagebus import MessageBus

blog = types.ModuleType("blog")
blog_app = types.ModuleType("blog.app")


def register(bus: MessageBus) -> None:
    """Register the blog's handlers (none needed to show the function's set-up)."""


blog_app.register = register  # type: ignore[attr-defined]
blog.app = blog_app  # type: ignore[attr-defined]
sys.modules["blog"] = blog
sys.modules["blog.app"] = blog_app
