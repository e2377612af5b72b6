"""One unary call to stepup with Python's grpcio: over TLS or mutual TLS, or
in plaintext on a Unix socket.

Used by tests/transport.rs: a client written by others, with certificates the
Rust test made. The request and response are protobuf bytes, hex-encoded, so
no generated stubs are needed.

    python grpcio_client.py TARGET ROOT_PEM [KEY_PEM CERT_PEM] METHOD REQUEST_HEX
    python grpcio_client.py unix:PATH - METHOD REQUEST_HEX

Prints the response bytes as hex on success (exit 0); on a gRPC error prints
`error CODE DETAILS` (exit 3), then one line per google.rpc error detail the
status carries, decoded by grpcio-status: `ErrorInfo REASON DOMAIN` and
`BadRequest FIELD: DESCRIPTION`.
"""

import sys

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


def main(argv):
    if len(argv) == 4:
        target, root, method, request = argv
        key = cert = None
    elif len(argv) == 6:
        target, root, key, cert, method, request = argv
    else:
        print(__doc__, file=sys.stderr)
        return 2
    if root == "-":
        # On a Unix socket grpc-core sends the %-encoded path as :authority,
        # which stepup's HTTP/2 server rejects: name a host instead.
        channel = grpc.insecure_channel(target, options=[("grpc.default_authority", "localhost")])
    else:
        read = lambda path: open(path, "rb").read() if path else None
        credentials = grpc.ssl_channel_credentials(
            root_certificates=read(root),
            private_key=read(key),
            certificate_chain=read(cert),
        )
        # The server certificate names `localhost`; the target is an IP address.
        options = [("grpc.ssl_target_name_override", "localhost")]
        channel = grpc.secure_channel(target, credentials, options=options)
    with channel:
        call = channel.unary_unary(
            method,
            request_serializer=None,
            response_deserializer=None,
        )
        try:
            response = call(bytes.fromhex(request), timeout=10)
        except grpc.RpcError as e:
            print(f"error {e.code().name} {e.details()}")
            print_details(e)
            return 3
    print(response.hex())
    return 0


def print_details(error):
    status = rpc_status.from_call(error)
    for detail in status.details if status else []:
        info = error_details_pb2.ErrorInfo()
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(info):
            print(f"ErrorInfo {info.reason} {info.domain}")
        elif detail.Unpack(bad):
            for v in bad.field_violations:
                print(f"BadRequest {v.field}: {v.description}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
