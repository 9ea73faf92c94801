"""The wire contract of a service as documents: JSON Schema, AsyncAPI, breaking changes.

What a service promises its peers, made from the type information its codec decodes
with, so that the documents and the wire agree by construction:

- :func:`export_schemas`: every registered message type's JSON Schema (2020-12), and
  :func:`message_schema` for one type alone; :func:`breaking_changes` compares two
  exports (``messagebus schema``, ``--check``).
- :func:`asyncapi_document`: the service's AsyncAPI 3.0 document (channels, operations,
  messages with the CloudEvents attributes as headers); :func:`asyncapi_breaking_changes`
  compares two (``messagebus asyncapi``, ``--check``).

Build and CI tooling rather than application code, hence a module of its own.
"""

from messagebus._asyncapi import asyncapi_breaking_changes, asyncapi_document
from messagebus._schema import breaking_changes, export_schemas, message_schema

__all__ = [
    "asyncapi_breaking_changes",
    "asyncapi_document",
    "breaking_changes",
    "export_schemas",
    "message_schema",
]
