"""The SCRAM credentials of the broker's users, kept in <data>/@node/scram-credentials.json.

One file, rewritten atomically (write, fsync, rename) on every change: users are few and change
rarely. What is kept is what Kafka keeps (salt, iterations, StoredKey, ServerKey per mechanism);
a password never reaches the disk. Changes come from AlterUserScramCredentials, `pstream user`
(which speaks that API) and the bootstrap user of the configuration.
"""

from __future__ import annotations

import os

from pstream.errors import ConfigError
from pstream.security.scram import MECHANISMS, ScramCredential, make_credential
from pstream.storage import layout

CREDENTIALS_FILE = "scram-credentials.json"


class CredentialStore:
    def __init__(self, node_dir: str):
        self.path = os.path.join(node_dir, CREDENTIALS_FILE)
        self.users: dict[str, dict[str, ScramCredential]] = {}

    def load(self) -> CredentialStore:
        if os.path.exists(self.path):
            data = layout.read_json(self.path)
            try:
                self.users = {user: {mech: ScramCredential.from_json(mech, c) for mech, c in mechs.items()
                                     if mech in MECHANISMS}
                              for user, mechs in data.get("users", {}).items()}
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigError(f"{self.path} is unreadable ({exc!r}): restore it from a backup, or remove it "
                                  f"and create the users again") from None
        return self

    def save(self) -> None:
        layout.write_json_atomic(self.path, {"users": {
            user: {mech: c.to_json() for mech, c in sorted(mechs.items())} for user, mechs in sorted(self.users.items())}})

    def get(self, user: str, mechanism: str) -> ScramCredential | None:
        return self.users.get(user, {}).get(mechanism)

    def any_of(self, user: str) -> list[ScramCredential]:
        return list(self.users.get(user, {}).values())

    def put(self, user: str, credential: ScramCredential) -> None:
        self.users.setdefault(user, {})[credential.mechanism] = credential

    def delete(self, user: str, mechanism: str) -> bool:
        mechs = self.users.get(user, {})
        if mechs.pop(mechanism, None) is None:
            return False
        if not mechs:
            del self.users[user]
        return True

    def ensure_bootstrap_user(self, spec: str) -> str | None:
        """The configured bootstrap user "NAME:PASSWORD[:MECHANISM]" (Redpanda's RP_BOOTSTRAP_USER),
        created with both SCRAM mechanisms (or the one named) unless the user already exists;
        returns the name when it was created."""
        name, sep, rest = spec.partition(":")
        password, _, mechanism = rest.partition(":")
        if not name or not sep or not password:
            raise ConfigError("bootstrap_user must be NAME:PASSWORD or NAME:PASSWORD:MECHANISM")
        if mechanism and mechanism not in MECHANISMS:
            raise ConfigError(f"bootstrap_user: unknown mechanism {mechanism!r} (one of {', '.join(MECHANISMS)})")
        if name in self.users:
            return None
        for mech in [mechanism] if mechanism else list(MECHANISMS):
            self.put(name, make_credential(mech, password))
        self.save()
        return name
