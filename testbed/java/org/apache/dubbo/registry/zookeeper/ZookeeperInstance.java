package org.apache.dubbo.registry.zookeeper;

import java.util.Map;
import java.util.TreeMap;

/**
 * The payload Dubbo 3 stores in each Curator service instance. Same package, class name,
 * fields and property order as Dubbo's own, so Curator's JsonInstanceSerializer writes the
 * same JSON (including "@class") and reads Dubbo's instances back.
 */
public class ZookeeperInstance {
    private String id;
    private String name;
    private Map<String, String> metadata = new TreeMap<>();

    /** For Jackson when it reads an instance. */
    public ZookeeperInstance() {}

    public ZookeeperInstance(String id, String name, Map<String, String> metadata) {
        this.id = id;
        this.name = name;
        this.metadata = metadata;
    }

    public String getId() {
        return id;
    }

    public void setId(String id) {
        this.id = id;
    }

    public String getName() {
        return name;
    }

    public void setName(String name) {
        this.name = name;
    }

    public Map<String, String> getMetadata() {
        return metadata;
    }

    public void setMetadata(Map<String, String> metadata) {
        this.metadata = metadata;
    }
}
