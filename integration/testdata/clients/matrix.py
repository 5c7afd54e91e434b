"""psycopg 3's part of pgcertgate's client matrix (integration/clients_test.go).

Run with Debian's /usr/bin/python3 (python3-psycopg). It speaks the matrix's
line protocol on stdout and waits for "cancel" on stdin before it cancels its
pg_sleep. Settings come from MATRIX_* environment variables.
"""

import os
import sys
import threading

import psycopg
from psycopg import conninfo


def say(line):
    print(line, flush=True)


def main():
    env = os.environ
    dsn = conninfo.make_conninfo(
        host=env["MATRIX_HOST"],
        port=env["MATRIX_PORT"],
        dbname=env["MATRIX_DB"],
        user=env["MATRIX_USER"],
        sslmode="verify-full",
        sslrootcert=env["MATRIX_ROOT"],
        sslcert=env["MATRIX_CERT"],
        sslkey=env["MATRIX_KEY"],
        application_name="matrix-psycopg",
    )
    table = env["MATRIX_TABLE"]
    rows = int(env["MATRIX_ROWS"])
    lib = psycopg.pq.version()
    with psycopg.connect(dsn, autocommit=True) as conn:
        say("version psycopg %s (%s), libpq %d.%d" % (psycopg.__version__, psycopg.pq.__impl__, lib // 10000, lib % 100))
        cur = conn.cursor()
        cur.execute("select current_user, pg_backend_pid()")
        user, pid = cur.fetchone()
        say("user %s" % user)
        say("pid %d" % pid)

        chunks = []
        with cur.copy("COPY (select i, repeat('x', 1000) from generate_series(1, %d) i) TO STDOUT" % rows) as copy:
            for chunk in copy:
                chunks.append(bytes(chunk))
        data = b"".join(chunks)
        say("copy_out %d" % len(data))
        cur.execute("CREATE TABLE %s (i int, s text)" % table)
        with cur.copy("COPY %s FROM STDIN" % table) as copy:
            copy.write(data)
        say("copy_in %d" % cur.rowcount)

        # conn.cancel() is libpq's PQcancel: a CancelRequest on a new
        # connection, sent while another thread waits for the query.
        outcome = ["completed"]

        def sleep():
            try:
                conn.execute("select pg_sleep(60)")
            except psycopg.Error as e:
                outcome[0] = "%s %s" % (e.sqlstate, str(e).strip())

        t = threading.Thread(target=sleep)
        t.start()
        say("sleeping")
        if sys.stdin.readline().strip() != "cancel":
            raise SystemExit("expected cancel on stdin")
        conn.cancel()
        t.join()
        say("cancelled %s" % outcome[0])
        say("alive %d" % conn.execute("select pg_backend_pid()").fetchone()[0])
    say("done")


if __name__ == "__main__":
    main()
