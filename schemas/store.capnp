@0xc8ea70c3722f4e87;
# Records of the node's store (store/). Disk format: ordinals only grow, nothing is renumbered
# or reused; a field no longer written stays here, marked deprecated.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("mesh::schema");

# serf's three Lamport clocks, as they were at the last change (serf snapshot "clock",
# "event-clock" and "query-clock" entries).
struct SerfClocks {
  clock @0 :UInt64;
  eventClock @1 :UInt64;
  queryClock @2 :UInt64;
  # Wall-clock time of the write, Unix milliseconds (for operators; never compared).
  writtenAtMs @3 :Int64;
}

struct Tag {
  key @0 :Text;
  value @1 :Text;
}

# A member this node knew, keyed by name: what a restart needs to rejoin the cluster.
struct KnownMember {
  name @0 :Text;
  addr @1 :Data;        # IP, 4 or 16 bytes
  port @2 :UInt16;
  status @3 :MemberStatus;
  tags @4 :List(Tag);
  updatedAtMs @5 :Int64;

  enum MemberStatus {
    none @0;
    alive @1;
    leaving @2;
    left @3;
    failed @4;
  }
}

# The gossip keyring, primary key first.
struct GossipKeyring {
  keys @0 :List(Data);
  updatedAtMs @1 :Int64;
}
