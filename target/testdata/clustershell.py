# Reads requests from stdin, one a line, and answers each on one line with
# ClusterShell's NodeSet (the library behind `nodeset`), for peer_test.go:
#   e<TAB>SPEC        -> the expansion, names separated by spaces
#   f<TAB>N1 N2 ...   -> ClusterShell's fold of the names
# or "ERROR<TAB>message" when ClusterShell refuses the input.
import sys

from ClusterShell.NodeSet import NodeSet

for line in sys.stdin:
    op, _, arg = line.rstrip("\n").partition("\t")
    try:
        if op == "e":
            out = " ".join(NodeSet(arg))
        else:
            out = str(NodeSet.fromlist(arg.split(" ")))
    except Exception as e:  # any refusal is an answer, not a crash
        out = "ERROR\t" + str(e).replace("\n", " ")
    sys.stdout.write(out + "\n")
