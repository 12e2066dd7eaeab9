"""`python3 -m sglang.launch_server ARGS`, as vramgate starts SGLang, runs the stand-in."""

import sys

from server import SGLANG, serve

serve(SGLANG, sys.argv[1:])
