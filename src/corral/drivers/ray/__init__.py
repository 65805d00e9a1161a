"""The ``ray`` placement: ``driver.RayDriver`` runs agents on a Ray cluster.

``link`` starts and speaks to the ``bridge`` process, the only one that imports Ray (over the
JSON lines of ``protocol``); the bridge runs a ``node.Node`` actor on each node, which starts
the agents' commands there. ``options`` declares the ``ray:`` block. The package face stays
empty, so importing one part does not import the driver.
"""
