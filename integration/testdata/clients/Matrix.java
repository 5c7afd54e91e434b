// Matrix is pgjdbc's part of pgcertgate's client matrix
// (integration/clients_test.go). It runs as a single-file source program
// (java -cp /usr/share/java/postgresql.jar Matrix.java) and speaks the
// matrix's line protocol on stdout, waiting for "cancel" on stdin before it
// cancels its pg_sleep. Settings come from MATRIX_* environment variables.
import java.io.BufferedReader;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.InputStreamReader;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicReference;

import org.postgresql.PGConnection;
import org.postgresql.copy.CopyManager;

public class Matrix {
    static void say(String line) {
        System.out.println(line);
        System.out.flush();
    }

    static String env(String name) {
        String v = System.getenv(name);
        if (v == null) {
            throw new IllegalArgumentException("missing " + name);
        }
        return v;
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://" + env("MATRIX_HOST") + ":" + env("MATRIX_PORT") + "/" + env("MATRIX_DB");
        Properties p = new Properties();
        p.setProperty("user", env("MATRIX_USER"));
        p.setProperty("sslmode", "verify-full");
        p.setProperty("sslrootcert", env("MATRIX_ROOT"));
        p.setProperty("sslcert", env("MATRIX_CERT"));
        // pgjdbc reads a PKCS#8 DER key (the .pk8 the test makes).
        p.setProperty("sslkey", env("MATRIX_KEY"));
        p.setProperty("ApplicationName", "matrix-jdbc");
        String table = env("MATRIX_TABLE");
        int rows = Integer.parseInt(env("MATRIX_ROWS"));

        try (Connection conn = DriverManager.getConnection(url, p)) {
            say("version pgjdbc " + conn.getMetaData().getDriverVersion() + ", Java " + System.getProperty("java.version"));
            try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("select current_user, pg_backend_pid()")) {
                rs.next();
                say("user " + rs.getString(1));
                say("pid " + rs.getInt(2));
            }

            CopyManager copy = conn.unwrap(PGConnection.class).getCopyAPI();
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            copy.copyOut("COPY (select i, repeat('x', 1000) from generate_series(1, " + rows + ") i) TO STDOUT", out);
            say("copy_out " + out.size());
            try (Statement st = conn.createStatement()) {
                st.execute("CREATE TABLE " + table + " (i int, s text)");
            }
            long in = copy.copyIn("COPY " + table + " FROM STDIN", new ByteArrayInputStream(out.toByteArray()));
            say("copy_in " + in);

            // Statement.cancel sends a CancelRequest on a new connection.
            Statement sleeper = conn.createStatement();
            AtomicReference<String> outcome = new AtomicReference<>("completed");
            Thread t = new Thread(() -> {
                try {
                    sleeper.execute("select pg_sleep(60)");
                } catch (SQLException e) {
                    outcome.set(e.getSQLState() + " " + e.getMessage());
                }
            });
            t.start();
            say("sleeping");
            BufferedReader stdin = new BufferedReader(new InputStreamReader(System.in));
            if (!"cancel".equals(stdin.readLine())) {
                throw new IllegalStateException("expected cancel on stdin");
            }
            sleeper.cancel();
            t.join();
            say("cancelled " + outcome.get());

            try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("select pg_backend_pid()")) {
                rs.next();
                say("alive " + rs.getInt(1));
            }
        }
        say("done");
    }
}
