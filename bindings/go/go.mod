module github.com/honker/honker/bindings/go

go 1.19

require github.com/mattn/go-sqlite3 v1.14.16

// Debian ships mattn/go-sqlite3 as source (golang-github-mattn-go-sqlite3-dev), linked against the
// system libsqlite3. Outside Debian, drop this line and let the module proxy fetch v1.14.16+.
replace github.com/mattn/go-sqlite3 => /usr/share/gocode/src/github.com/mattn/go-sqlite3
