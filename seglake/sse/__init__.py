"""Server-side encryption (SSE-S3, SSE-C): keys, chunk sealing, request headers.

Pure code and small file operations only; the frontends use it to encrypt
before ``Append`` and decrypt on GET, the operator CLI to rotate the master
key. The writer never imports it: it stores opaque bytes
(``docs/design-version-metadata.md`` §4).
"""
