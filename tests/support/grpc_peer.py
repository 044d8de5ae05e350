#!/usr/bin/env python3
"""A real gRPC server and client for the proxy's tests (issue 7), on grpcio (Debian's
python3-grpcio, the C-core implementation), with no generated code: the methods of service
mesh.test.Echo take and return raw bytes.

  grpc_peer.py server --listen HOST:PORT --name NAME
      Prints "ready" once serving. Methods:
        Echo   (unary)          NAME:request; the caller's x-forwarded-client-cert and
                                x-request-id come back as trailing metadata
        Count  (server stream)  the request is a number n: n messages "0".."n-1"
        Sum    (client stream)  the messages joined with "+"
        Chat   (bidirectional)  each message back as "re:MESSAGE"
        Fail   (unary)          aborts: NOT_FOUND "no such thing" with trailing metadata
  grpc_peer.py client --target HOST:PORT --authority SERVICE [--calls N]
      Calls each method (Echo N times) and prints one JSON object with what came back.
"""

import argparse
import json
import sys
import time
from concurrent import futures

import grpc

SERVICE = "mesh.test.Echo"


def identity(b):
    return b


def serve(args):
    name = args.name.encode()

    def echo(request, context):
        md = dict(context.invocation_metadata())
        context.set_trailing_metadata((
            ("x-seen-xfcc", md.get("x-forwarded-client-cert", "")),
            ("x-seen-request-id", md.get("x-request-id", "")),
        ))
        return name + b":" + request

    def count(request, context):
        for i in range(int(request.decode())):
            yield str(i).encode()

    def total(request_iterator, context):
        return b"+".join(request_iterator)

    def chat(request_iterator, context):
        for m in request_iterator:
            yield b"re:" + m

    def fail(request, context):
        context.set_trailing_metadata((("x-why", "testing"),))
        context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")

    handlers = {
        "Echo": grpc.unary_unary_rpc_method_handler(echo, identity, identity),
        "Count": grpc.unary_stream_rpc_method_handler(count, identity, identity),
        "Sum": grpc.stream_unary_rpc_method_handler(total, identity, identity),
        "Chat": grpc.stream_stream_rpc_method_handler(chat, identity, identity),
        "Fail": grpc.unary_unary_rpc_method_handler(fail, identity, identity),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    if server.add_insecure_port(args.listen) == 0:
        print("cannot listen on " + args.listen, file=sys.stderr)
        return 2
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()
    return 0


def client(args):
    channel = grpc.insecure_channel(args.target, options=(("grpc.default_authority", args.authority),))
    grpc.channel_ready_future(channel).result(timeout=10)

    def method(kind, name):
        return getattr(channel, kind)("/" + SERVICE + "/" + name, request_serializer=identity,
                                      response_deserializer=identity)

    out = {}
    echo = method("unary_unary", "Echo")
    replies, trailing = [], {}
    for i in range(args.calls):
        reply, call = echo.with_call(("hello-%d" % i).encode(), timeout=10)
        replies.append(reply.decode())
        trailing = dict(call.trailing_metadata())
    out["echo"] = replies
    out["echo_trailing"] = trailing
    out["count"] = [m.decode() for m in method("unary_stream", "Count")(b"5", timeout=10)]
    out["sum"] = method("stream_unary", "Sum")(iter([b"a", b"b", b"c"]), timeout=10).decode()
    out["chat"] = [m.decode() for m in method("stream_stream", "Chat")(iter([b"x", b"y"]), timeout=10)]
    big = b"z" * (1 << 20)
    out["big"] = len(echo(big, timeout=20))
    try:
        method("unary_unary", "Fail")(b"", timeout=10)
        out["fail"] = {"code": "OK"}
    except grpc.RpcError as e:
        out["fail"] = {"code": e.code().name, "details": e.details(),
                       "trailing": dict(e.trailing_metadata() or ())}
    print(json.dumps(out), flush=True)
    return 0


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("server")
    s.add_argument("--listen", required=True)
    s.add_argument("--name", required=True)
    c = sub.add_parser("client")
    c.add_argument("--target", required=True)
    c.add_argument("--authority", required=True)
    c.add_argument("--calls", type=int, default=3)
    args = p.parse_args()
    return serve(args) if args.mode == "server" else client(args)


if __name__ == "__main__":
    sys.exit(main())
