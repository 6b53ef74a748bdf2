package release

// WalkOrder is walkOrder, for tests.
var WalkOrder = walkOrder[string]

// ParseLine is parseLine, for tests.
func ParseLine(line []byte) (Entry, bool) {
	var e Entry
	p, ok := parseLine(line, &e)
	e.Path = string(p)
	return e, ok
}

// DecodeLine is decodeLine: how a manifest line that ParseLine does not
// read is read, for tests.
var DecodeLine = decodeLine
