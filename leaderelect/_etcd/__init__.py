"""The only code in leaderelect that touches gRPC.

The rest of the package speaks in its own terms; this package owns channels, per-call
deadlines, endpoint failover, authentication and the translation of gRPC errors.
"""

from leaderelect._etcd import etcd_pb2 as pb
from leaderelect._etcd.client import EtcdClient, TLSFiles, prefix_end
from leaderelect._etcd.connection import Endpoint
from leaderelect._etcd.watchmux import Subscription

__all__ = ["Endpoint", "EtcdClient", "Subscription", "TLSFiles", "pb", "prefix_end"]
