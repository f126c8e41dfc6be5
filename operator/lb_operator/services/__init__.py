"""Services of ``type: LoadBalancer`` with ``spec.loadBalancerClass: lboperator.dev/<backend>``, served as
the five kinds (``translate``) by the replica that owns their tree (``controller``)."""
