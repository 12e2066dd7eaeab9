"""`python3 -m vllm.entrypoints.openai.api_server ARGS`, as vramgate starts vLLM, runs the stand-in."""

import sys

from server import VLLM, serve

serve(VLLM, sys.argv[1:])
