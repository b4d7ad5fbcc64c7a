package main

// watchParent does nothing on Windows, where go run's child is not left
// behind in the same way (the console's Ctrl-C reaches both) and a parent
// process ID says little.
func watchParent() {}
