package config

// parseWritableMode checks writable-mode and writable-user together; chmod
// comes back as "".
func parseWritableMode(mode, user string, haveDirs bool, fail func(string, string, ...any)) (string, string) {
	switch mode {
	case "", "chmod":
		if user != "" {
			fail("writable-user", "is used by writable-mode acl or chgrp only (writable-mode is %s)", orDefault(mode, "chmod, the default"))
		}
		return "", ""
	case "acl", "chgrp":
	default:
		fail("writable-mode", "%q is not one of chmod, acl, chgrp", mode)
		return "", ""
	}
	what := map[string]string{"acl": "the web server's user", "chgrp": "the web server's group"}[mode]
	switch {
	case user == "":
		fail("writable-user", "writable-mode %s needs writable-user: %s (e.g. www-data)", mode, what)
	case validUser(user) != nil:
		fail("writable-user", "%q is not a valid user or group name (letters, digits, _ . -)", user)
	}
	if !haveDirs {
		fail("writable-mode", "writable-mode %s has nothing to do without writable-dirs", mode)
	}
	return mode, user
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
