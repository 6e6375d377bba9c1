from modgraph.cli import main

main()
