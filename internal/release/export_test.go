package release

// WalkOrder is walkOrder, for tests.
var WalkOrder = walkOrder
