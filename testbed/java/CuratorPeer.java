import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.lang.reflect.Field;
import java.lang.reflect.Method;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.util.Collection;
import java.util.HashMap;
import java.util.Iterator;
import java.util.Map;
import java.util.TreeMap;
import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.state.ConnectionState;
import org.apache.curator.retry.ExponentialBackoffRetry;
import org.apache.curator.x.discovery.ServiceCache;
import org.apache.curator.x.discovery.ServiceDiscovery;
import org.apache.curator.x.discovery.ServiceDiscoveryBuilder;
import org.apache.curator.x.discovery.ServiceInstance;
import org.apache.curator.x.discovery.details.JsonInstanceSerializer;
import org.apache.dubbo.registry.zookeeper.ZookeeperInstance;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.ZooKeeper;

/**
 * A Dubbo 3 provider's and consumer's use of Curator's ServiceDiscovery, driven line by line.
 *
 * <p>Arguments: {@code --zookeeper CONNECT [--base-path /services] [--session-timeout-ms N]
 * [--listen-port N]}. Every stdin line is one JSON command ({@code {"op": ...}}); every stdout
 * line is one JSON object: a reply ({@code "reply": op, "ok": true|false}) to each command, in
 * order, or an event ({@code "event": ...}) such as a connection state change, which carries
 * the session id and password so that a test can expire the session from outside.
 *
 * <p>Commands: register {name, address, port, metadata}; update {id, metadata} (merged into the
 * registered metadata, then Curator's updateService, as Dubbo does when its revision changes);
 * unregister {id}; query {name} (queryForInstances); cache {name} (a started ServiceCache's
 * instances); session; drop (closes the client's socket: the session survives, Curator
 * reconnects and re-registers); stop (unregisters, closes, exits 0; also on end of input).
 */
public final class CuratorPeer {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final PrintWriter OUT =
            new PrintWriter(System.out, true, StandardCharsets.UTF_8);

    private final CuratorFramework client;
    private final ServiceDiscovery<ZookeeperInstance> discovery;
    private final JsonInstanceSerializer<ZookeeperInstance> serializer =
            new JsonInstanceSerializer<>(ZookeeperInstance.class);
    private final String basePath;
    private final Map<String, ServiceInstance<ZookeeperInstance>> registered = new HashMap<>();
    private final Map<String, ServiceCache<ZookeeperInstance>> caches = new HashMap<>();

    private CuratorPeer(String connect, String basePath, int sessionTimeoutMs) {
        this.basePath = basePath;
        // Dubbo's defaults: base sleep 1 s, 10 retries, at most 4 s between them.
        client = CuratorFrameworkFactory.builder()
                .connectString(connect)
                .sessionTimeoutMs(sessionTimeoutMs)
                .connectionTimeoutMs(Math.min(sessionTimeoutMs, 15000))
                .retryPolicy(new ExponentialBackoffRetry(1000, 10, 4000))
                .build();
        client.getConnectionStateListenable().addListener((c, state) -> connectionEvent(state));
        // What Dubbo's CuratorFrameworkUtils.buildServiceDiscovery builds: the default
        // serializer is JsonInstanceSerializer of the payload class; set here explicitly.
        discovery = ServiceDiscoveryBuilder.builder(ZookeeperInstance.class)
                .client(client)
                .basePath(basePath)
                .serializer(serializer)
                .build();
    }

    public static void main(String[] args) throws Exception {
        Map<String, String> options = new HashMap<>();
        for (int i = 0; i + 1 < args.length; i += 2) {
            options.put(args[i], args[i + 1]);
        }
        String connect = options.get("--zookeeper");
        if (connect == null) {
            System.err.println("usage: CuratorPeer --zookeeper HOST:PORT [--base-path /services]"
                    + " [--session-timeout-ms N] [--listen-port N]");
            System.exit(2);
        }
        if (options.containsKey("--listen-port")) {
            listen(Integer.parseInt(options.get("--listen-port")));
        }
        CuratorPeer peer = new CuratorPeer(
                connect,
                options.getOrDefault("--base-path", "/services"),
                Integer.parseInt(options.getOrDefault("--session-timeout-ms", "60000")));
        peer.client.start();
        peer.client.blockUntilConnected();
        peer.discovery.start();
        ObjectNode ready = JSON.createObjectNode().put("event", "ready");
        peer.session(ready);
        emit(ready);
        peer.serve(new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8)));
        System.exit(0);
    }

    private void serve(BufferedReader input) throws Exception {
        String line;
        while ((line = input.readLine()) != null) {
            if (line.isBlank()) {
                continue;
            }
            JsonNode command = JSON.readTree(line);
            String op = command.path("op").asText();
            ObjectNode reply = JSON.createObjectNode().put("reply", op);
            try {
                if (!handle(op, command, reply)) {
                    close();
                    emit(reply.put("ok", true));
                    return;
                }
                reply.put("ok", true);
            } catch (Exception e) {
                reply.put("ok", false).put("error", e.getClass().getSimpleName());
                if (e instanceof KeeperException) {
                    reply.put("code", ((KeeperException) e).code().name());
                }
                reply.put("message", String.valueOf(e.getMessage()));
            }
            emit(reply);
        }
        close(); // end of input: as "stop", without a reply
    }

    /** Carries out one command, filling in the reply; false when the peer should stop. */
    private boolean handle(String op, JsonNode command, ObjectNode reply) throws Exception {
        switch (op) {
            case "register": {
                ServiceInstance<ZookeeperInstance> instance = instance(
                        command.path("name").asText(),
                        command.path("address").asText(),
                        command.path("port").asInt(),
                        metadata(command.path("metadata"), new TreeMap<>()));
                discovery.registerService(instance);
                registered.put(instance.getId(), instance);
                reply.put("id", instance.getId()).put("path", pathOf(instance));
                return true;
            }
            case "update": {
                ServiceInstance<ZookeeperInstance> old = known(command.path("id").asText());
                ServiceInstance<ZookeeperInstance> instance = instance(
                        old.getName(), old.getAddress(), old.getPort(),
                        metadata(command.path("metadata"), old.getPayload().getMetadata()));
                discovery.updateService(instance);
                registered.put(instance.getId(), instance);
                reply.put("id", instance.getId()).put("path", pathOf(instance));
                return true;
            }
            case "unregister":
                discovery.unregisterService(known(command.path("id").asText()));
                registered.remove(command.path("id").asText());
                return true;
            case "query":
                reply.set("instances", render(discovery.queryForInstances(
                        command.path("name").asText())));
                return true;
            case "cache":
                reply.set("instances", render(cache(command.path("name").asText()).getInstances()));
                return true;
            case "session":
                session(reply);
                return true;
            case "drop":
                session(reply);
                closeSocket(client.getZookeeperClient().getZooKeeper());
                return true;
            case "stop":
                return false;
            default:
                throw new IllegalArgumentException("unknown op " + op);
        }
    }

    /** An instance as Dubbo 3 builds it: id "address:port", payload id and name the same. */
    private static ServiceInstance<ZookeeperInstance> instance(
            String name, String address, int port, Map<String, String> metadata) throws Exception {
        String id = address + ":" + port;
        return ServiceInstance.<ZookeeperInstance>builder()
                .id(id)
                .name(name)
                .address(address)
                .port(port)
                .payload(new ZookeeperInstance(id, name, metadata))
                .build();
    }

    /** ``base`` with the command's metadata entries put over it, sorted as Dubbo sorts them. */
    private static Map<String, String> metadata(JsonNode given, Map<String, String> base) {
        Map<String, String> merged = new TreeMap<>(base);
        Iterator<Map.Entry<String, JsonNode>> fields = given.fields();
        while (fields.hasNext()) {
            Map.Entry<String, JsonNode> field = fields.next();
            merged.put(field.getKey(), field.getValue().asText());
        }
        return merged;
    }

    private ServiceInstance<ZookeeperInstance> known(String id) {
        ServiceInstance<ZookeeperInstance> instance = registered.get(id);
        if (instance == null) {
            throw new IllegalArgumentException("not registered here: " + id);
        }
        return instance;
    }

    private String pathOf(ServiceInstance<ZookeeperInstance> instance) {
        return basePath + "/" + instance.getName() + "/" + instance.getId();
    }

    private ServiceCache<ZookeeperInstance> cache(String name) throws Exception {
        ServiceCache<ZookeeperInstance> cache = caches.get(name);
        if (cache == null) {
            cache = discovery.serviceCacheBuilder().name(name).build();
            cache.start();
            caches.put(name, cache);
        }
        return cache;
    }

    /** Each instance as Curator serializes it, so a test sees exactly what a consumer read. */
    private ArrayNode render(Collection<ServiceInstance<ZookeeperInstance>> instances)
            throws Exception {
        ArrayNode list = JSON.createArrayNode();
        for (ServiceInstance<ZookeeperInstance> instance : instances) {
            list.add(JSON.readTree(serializer.serialize(instance)));
        }
        return list;
    }

    private void session(ObjectNode into) throws Exception {
        ZooKeeper zk = client.getZookeeperClient().getZooKeeper();
        into.put("session", "0x" + Long.toHexString(zk.getSessionId()));
        into.put("password", hex(zk.getSessionPasswd()));
    }

    private void connectionEvent(ConnectionState state) {
        ObjectNode event = JSON.createObjectNode().put("event", "connection");
        event.put("state", state.name());
        if (state.isConnected()) {
            try {
                session(event);
            } catch (Exception e) {
                event.put("error", String.valueOf(e));
            }
        }
        emit(event);
    }

    private void close() {
        for (ServiceCache<ZookeeperInstance> cache : caches.values()) {
            closeQuietly(cache);
        }
        closeQuietly(discovery); // unregisters what is still registered, as Dubbo's shutdown
        closeQuietly(client);
    }

    private static void closeQuietly(java.io.Closeable closeable) {
        try {
            closeable.close();
        } catch (Exception e) {
            System.err.println("close: " + e);
        }
    }

    /**
     * Drops the TCP connection the way ZooKeeper's own tests do (SendThread's
     * testableCloseSocket, package-private): the client sees a connection loss and reconnects
     * with the same session, and Curator's ServiceDiscovery re-registers its instances.
     */
    private static void closeSocket(ZooKeeper zk) throws Exception {
        Field cnxnField = ZooKeeper.class.getDeclaredField("cnxn");
        cnxnField.setAccessible(true);
        Object cnxn = cnxnField.get(zk);
        Field sendThreadField = cnxn.getClass().getDeclaredField("sendThread");
        sendThreadField.setAccessible(true);
        Object sendThread = sendThreadField.get(cnxn);
        Method close = sendThread.getClass().getDeclaredMethod("testableCloseSocket");
        close.setAccessible(true);
        close.invoke(sendThread);
    }

    /** A TCP listener standing in for the provider's Dubbo port: "ping" lines get "pong". */
    private static void listen(int port) throws Exception {
        ServerSocket server = new ServerSocket(port);
        emit(JSON.createObjectNode().put("event", "listening").put("port", server.getLocalPort()));
        Thread acceptor = new Thread(() -> {
            while (true) {
                try {
                    Socket socket = server.accept();
                    Thread answer = new Thread(() -> pong(socket, server.getLocalPort()));
                    answer.setDaemon(true);
                    answer.start();
                } catch (Exception e) {
                    return;
                }
            }
        }, "listener");
        acceptor.setDaemon(true);
        acceptor.start();
    }

    private static void pong(Socket socket, int port) {
        try (socket) {
            BufferedReader in = new BufferedReader(
                    new InputStreamReader(socket.getInputStream(), StandardCharsets.UTF_8));
            PrintWriter out = new PrintWriter(socket.getOutputStream(), true, StandardCharsets.UTF_8);
            while (in.readLine() != null) {
                out.println("pong curator-peer " + port);
            }
        } catch (Exception e) {
            // the caller hung up; nothing to do
        }
    }

    private static String hex(byte[] bytes) {
        StringBuilder text = new StringBuilder();
        for (byte b : bytes) {
            text.append(String.format("%02x", b));
        }
        return text.toString();
    }

    private static synchronized void emit(JsonNode line) {
        OUT.println(line.toString());
    }
}
