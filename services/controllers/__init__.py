"""The controller manager (`kubenats controllers`): replicaset, deployment, garbage collector and
namespace controllers over shared informers; see `main.py`."""
