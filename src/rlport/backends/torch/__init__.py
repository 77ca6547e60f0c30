"""The torch backend: ops, the graph as an nn.Module, the policy."""
