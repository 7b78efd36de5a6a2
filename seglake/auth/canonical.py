from blake3 import blake3


def canonical_id(access_key_id: str) -> str:
    return blake3(b"seglake-canonical-id:" + access_key_id.encode()).hexdigest()
