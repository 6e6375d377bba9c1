"""Routes through the graph, translation, recognizer readings, anchors and contact sheets."""
