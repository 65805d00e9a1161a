"""An agent's ``credential_process``: print its current temporary credentials.

Run by the agent's SDK (any language) whenever its credentials near their expiry, as
``PYTHON -I -S fetch.py SOCKET``; the standard library only, so it runs with the host's
interpreter in any agent (corral copies it into the agent's private dir). It reads one JSON
reply from the daemon's socket for this instance and prints it; an error goes to stderr, in
one line, with a non-zero exit (the SDK shows it).
"""

import json
import socket
import sys


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: fetch.py SOCKET (corral writes this line into the agent's AWS config)",
              file=sys.stderr)
        return 2
    path = argv[1]
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(60)
    data = b""
    try:
        conn.connect(path)
        while chunk := conn.recv(65536):
            data += chunk
    except OSError as exc:
        print(f"corral: cannot reach the daemon for this agent's credentials at {path}: "
              f"{exc.strerror or exc} (is its fleet up? see 'corral ps')", file=sys.stderr)
        return 1
    finally:
        conn.close()
    try:
        reply = json.loads(data)
    except ValueError:
        print("corral: the daemon's reply was cut short (was it stopping?); try again",
              file=sys.stderr)
        return 1
    if "error" in reply:
        print(f"corral: {reply['error']}", file=sys.stderr)
        return 1
    sys.stdout.write(json.dumps(reply))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
