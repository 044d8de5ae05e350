@0xddc8188ae74efe9e;
# The service catalog (issue 5): each node is the only writer of its own services. A node's
# whole set travels and is stored as one NodeServices record, versioned by its owner; versions
# only grow. Wire and disk format: ordinals only grow.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("mesh::schema");

struct Label {
  key @0 :Text;
  value @1 :Text;
}

struct Instance {
  id @0 :Text;
  name @1 :Text;
  address @2 :Text;
  port @3 :UInt16;
  protocol @4 :Protocol;
  tags @5 :List(Text);
  labels @6 :List(Label);
  zone @7 :Text;
  weight @8 :UInt32;
  health @9 :Health;
  maintenance @10 :Bool;
  # Why it is in maintenance, or the output of the check that decided its health.
  note @11 :Text;

  enum Protocol {
    http @0;
    http2 @1;
    grpc @2;
    tcp @3;
  }
  enum Health {
    passing @0;
    warning @1;
    critical @2;
  }
}

struct NodeServices {
  owner @0 :Text;
  version @1 :UInt64;
  instances @2 :List(Instance);
  # Owner's wall clock at the change, Unix milliseconds (for operators; never compared).
  changedAtMs @3 :Int64;
}
