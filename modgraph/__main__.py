from modgraph.app.cli import main

main()
