"""The names the nodes register under in the Pyro5 name server: the one home of them."""
MASTER_NAME = "replog.master"
SECONDARY_PREFIX = "replog.secondary."      # + the secondary's name
NAMESERVER_OBJECT = "Pyro.NameServer"
NODE_PREFIX = "replog.node."              # + the name: every failover node, whatever its role
