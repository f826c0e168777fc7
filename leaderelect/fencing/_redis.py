"""RedisFence: one write command, run in a server-side script with the token check.

What is guaranteed (one Redis primary): the script runs atomically, so a command runs only
if its token is at least the highest recorded for the resource, and it records the token;
the accepted tokens of one resource never go down in the order Redis applied them. Not
guaranteed: commands sent without the fence; several commands as one unit (each ``execute``
is checked on its own: put them in one script of your own if they must go together); Redis
Cluster (the script touches keys it does not declare, so keep the fence and the data on
one node); a failover to a replica that had not received the latest token.
"""

from __future__ import annotations

from typing import Any

from leaderelect.exceptions import ConfigurationError, StaleTermError
from leaderelect.fencing._token import TermLike, token_and_time_left

# KEYS[1]: the fence key; ARGV[1]: the token; ARGV[2..]: the command and its arguments.
# Tokens are etcd revisions, checked below 2^53 (exact as Lua numbers); the recorded one
# is returned as stored (Lua's tostring would print 1e+14).
_SCRIPT = """
local recorded = redis.call('GET', KEYS[1]) or '0'
local token = tonumber(ARGV[1])
if token < tonumber(recorded) then
  return {0, recorded}
end
if token > tonumber(recorded) then
  redis.call('SET', KEYS[1], ARGV[1])
end
return {1, redis.call(unpack(ARGV, 2))}
"""


class RedisFence:
    """Runs write commands on *client* only for the newest term seen for *resource*.

    .. code-block:: python

        fence = RedisFence(redis.Redis(), "billing")
        fence.execute(term, "SET", "billing:last-run", "2026-12-01")
        fence.execute(term, "XADD", "billing:log", "*", "run", "42")

    :param client: a ``redis.Redis`` (or ``valkey.Valkey``) client.
    :param resource: what the fence protects; its token lives at ``<prefix><resource>``.
    """

    def __init__(self, client: Any, resource: str, *, prefix: str = "leaderelect:fence:") -> None:
        if not isinstance(resource, str) or not resource:
            raise ConfigurationError(f"resource must be a non-empty string, not {resource!r}")
        if not hasattr(client, "register_script"):
            raise ConfigurationError(f"client must be a redis.Redis client, not {type(client).__name__}")
        self.resource = resource
        self.key = prefix + resource
        self._client = client
        self._script = client.register_script(_SCRIPT)

    def execute(self, term: TermLike, *command: Any) -> Any:
        """Run *command* (``"SET", key, value``, ...) if *term* is not older than the newest
        term seen for the resource; returns the command's reply.

        :raises StaleTermError: a newer term was recorded, or *term* is over by the local
            clock (the command was not run).
        """
        if not command:
            raise ValueError("execute() needs a command, e.g. execute(term, 'SET', key, value)")
        token, _ = token_and_time_left(term, self.resource)
        accepted, reply = self._script(keys=[self.key], args=[token, *command])
        if not int(accepted):
            highest = int(reply)
            raise StaleTermError(
                f"{self.resource!r} has seen token {highest}; token {token} is from an older term",
                resource=self.resource,
                token=token,
                seen=highest,
            )
        return reply

    def highest(self) -> int | None:
        """The highest token recorded for the resource (None if none yet)."""
        value = self._client.get(self.key)
        return int(value) if value is not None else None
