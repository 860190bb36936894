"""HTTP signatures and keys: signing outgoing requests, verifying incoming ones."""

from mirror.signatures.digest import (
    content_digest_header,
    digest_header,
    verify_content_digest,
    verify_digest_header,
)
from mirror.signatures.http import (
    ParsedSignature,
    SignatureError,
    check_request,
    our_hosts,
    parse_signature,
    sign_request,
    verify_request,
    verify_signature,
)
from mirror.signatures.keys import (
    InvalidKey,
    generate_private_key,
    load_private_key,
    load_public_key,
    private_key_to_pem,
    public_key_pem,
)
from mirror.signatures.secrets import (
    MasterKey,
    MasterKeyError,
    create_master_key_file,
    load_master_key,
)

__all__ = [
    "InvalidKey",
    "MasterKey",
    "MasterKeyError",
    "ParsedSignature",
    "SignatureError",
    "check_request",
    "content_digest_header",
    "create_master_key_file",
    "digest_header",
    "generate_private_key",
    "load_master_key",
    "load_private_key",
    "load_public_key",
    "our_hosts",
    "parse_signature",
    "private_key_to_pem",
    "public_key_pem",
    "sign_request",
    "verify_content_digest",
    "verify_digest_header",
    "verify_request",
    "verify_signature",
]
