"""Activities: methods of classes that hold the gRPC stubs (or the read model's engine).

`worker.py` builds them; tests hand them a real server on port 0.
"""
