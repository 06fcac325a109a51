package shoal.yarntest;

import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CountDownLatch;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.hdfs.MiniDFSCluster;
import org.apache.hadoop.yarn.api.records.NodeId;
import org.apache.hadoop.yarn.api.records.NodeLabel;
import org.apache.hadoop.yarn.conf.YarnConfiguration;
import org.apache.hadoop.yarn.server.MiniYARNCluster;
import org.apache.hadoop.yarn.server.nodemanager.NodeManager;
import org.apache.hadoop.yarn.server.resourcemanager.nodelabels.RMNodeLabelsManager;

/**
 * A MiniYARNCluster for shoal's YARN tests: one ResourceManager on fixed ports, two or more
 * NodeManagers whose containers are real processes of the current user, the local file system as
 * the default file system. Once every NodeManager has registered it writes, under --out:
 * conf/yarn-site.xml (the cluster's configuration, so YARN_CONF_DIR works for any client),
 * env (KEY=VALUE lines a shell can source), cluster.json (the same as JSON) and, last, ready.
 * It stops on SIGTERM/SIGINT, or when standard input closes if --stop-on-eof is given.
 */
public final class MiniCluster {

  private MiniCluster() {}

  public static void main(String[] args) {
    try {
      run(args);
    } catch (Throwable t) {
      // The cluster's services run non-daemon threads: exit, or a failed start hangs forever.
      System.err.println("shoal-minicluster: failed: " + t);
      t.printStackTrace();
      System.exit(1);
    }
  }

  private static void run(String[] args) throws Exception {
    Map<String, String> opt = parse(args);
    Path out = Paths.get(opt.getOrDefault("out", "/tmp/shoal-yarn")).toAbsolutePath();
    String host = opt.getOrDefault("host", "127.0.0.1");
    int basePort = Integer.parseInt(opt.getOrDefault("base-port", "18030"));
    int nms = Integer.parseInt(opt.getOrDefault("nodemanagers", "2"));
    int nmMemMB = Integer.parseInt(opt.getOrDefault("nm-memory-mb", "4096"));
    int nmVcores = Integer.parseInt(opt.getOrDefault("nm-vcores", "8"));
    int maxAttempts = Integer.parseInt(opt.getOrDefault("max-attempts", "4"));
    boolean stopOnEOF = opt.containsKey("stop-on-eof");
    // hadoop.rpc.protection: authentication (Hadoop's default), integrity or privacy
    String protection = opt.getOrDefault("rpc-protection", "");
    if (nms < 2) {
      throw new IllegalArgumentException("--nodemanagers must be at least 2, got " + nms);
    }

    Files.createDirectories(out);
    Files.deleteIfExists(out.resolve("ready"));

    String scheduler = host + ":" + basePort;
    String tracker = host + ":" + (basePort + 1);
    String rm = host + ":" + (basePort + 2);
    String admin = host + ":" + (basePort + 3);
    String web = host + ":" + (basePort + 58); // 18088 for the default base 18030

    YarnConfiguration conf = new YarnConfiguration();
    conf.set("fs.defaultFS", "file:///"); // HDFS instead with --hdfs, below
    if (!protection.isEmpty()) {
      conf.set("hadoop.rpc.protection", protection);
    }
    conf.set("hadoop.tmp.dir", out.resolve("tmp").toString());
    conf.setBoolean(YarnConfiguration.YARN_MINICLUSTER_FIXED_PORTS, true);
    conf.set(YarnConfiguration.RM_ADDRESS, rm);
    conf.set(YarnConfiguration.RM_SCHEDULER_ADDRESS, scheduler);
    conf.set(YarnConfiguration.RM_RESOURCE_TRACKER_ADDRESS, tracker);
    conf.set(YarnConfiguration.RM_ADMIN_ADDRESS, admin);
    conf.set(YarnConfiguration.RM_WEBAPP_ADDRESS, web);
    conf.setInt(YarnConfiguration.RM_SCHEDULER_MINIMUM_ALLOCATION_MB, 64);
    conf.setInt(YarnConfiguration.RM_SCHEDULER_MAXIMUM_ALLOCATION_MB, nmMemMB);
    conf.setInt(YarnConfiguration.RM_SCHEDULER_MAXIMUM_ALLOCATION_VCORES, nmVcores);
    conf.setInt(YarnConfiguration.NM_PMEM_MB, nmMemMB);
    conf.setInt(YarnConfiguration.NM_VCORES, nmVcores);
    conf.setInt(YarnConfiguration.RM_AM_MAX_ATTEMPTS, maxAttempts);
    // Go programs reserve a lot of virtual memory; the checks would kill containers that use little.
    conf.setBoolean(YarnConfiguration.NM_PMEM_CHECK_ENABLED, false);
    conf.setBoolean(YarnConfiguration.NM_VMEM_CHECK_ENABLED, false);
    // A test machine's disk is often fuller than the 90% default allows.
    conf.setFloat(YarnConfiguration.NM_MAX_PER_DISK_UTILIZATION_PERCENTAGE, 100.0f);
    // Keep finished containers' logs and directories so `shoal yarn logs` can read them.
    conf.setInt(YarnConfiguration.DEBUG_NM_DELETE_DELAY_SEC, 3600);
    conf.setBoolean(YarnConfiguration.LOG_AGGREGATION_ENABLED, false);
    conf.setBoolean(YarnConfiguration.TIMELINE_SERVICE_ENABLED, false);
    // Two queues, so that tests can submit to one that is not the default.
    conf.set("yarn.scheduler.capacity.root.queues", "default,batch");
    conf.set("yarn.scheduler.capacity.root.default.capacity", "70");
    conf.set("yarn.scheduler.capacity.root.batch.capacity", "30");
    conf.set("yarn.scheduler.capacity.root.default.maximum-capacity", "100");
    conf.set("yarn.scheduler.capacity.root.batch.maximum-capacity", "100");
    // Several test applications run at once; the 10% default would queue their AMs.
    conf.setFloat("yarn.scheduler.capacity.maximum-am-resource-percent", 0.8f);
    // A non-exclusive node label on the first NodeManager: applications that ask for it land
    // there, and the others may still use its idle resources.
    String label = opt.getOrDefault("node-label", "");
    if (!label.isEmpty()) {
      conf.setBoolean(YarnConfiguration.NODE_LABELS_ENABLED, true);
      conf.set(YarnConfiguration.FS_NODE_LABELS_STORE_ROOT_DIR,
          out.resolve("node-labels").toUri().toString());
      conf.set("yarn.scheduler.capacity.root.accessible-node-labels", label);
      conf.set("yarn.scheduler.capacity.root.accessible-node-labels." + label + ".capacity", "100");
      conf.set("yarn.scheduler.capacity.root.default.accessible-node-labels", label);
      conf.set("yarn.scheduler.capacity.root.default.accessible-node-labels." + label + ".capacity", "100");
      conf.set("yarn.scheduler.capacity.root.batch.accessible-node-labels", " ");
    }

    // Optionally HDFS (one NameNode on fixed ports, one DataNode) as the default file system, so
    // that clients can stage files through WebHDFS as on a real cluster.
    MiniDFSCluster dfs = null;
    String defaultFS = "file:///";
    String webhdfs = "";
    if (opt.containsKey("hdfs")) {
      int nnPort = basePort - 10;     // 18020 for the default base
      int nnHttp = basePort + 40;     // 18070
      Configuration hconf = new Configuration();
      hconf.set("hadoop.tmp.dir", out.resolve("tmp").toString());
      if (!protection.isEmpty()) {
        hconf.set("hadoop.rpc.protection", protection);
      }
      hconf.setBoolean("dfs.permissions.enabled", false);
      hconf.set("dfs.namenode.http-address", host + ":" + nnHttp);
      hconf.set("dfs.namenode.rpc-address", host + ":" + nnPort);
      hconf.set("dfs.datanode.address", host + ":0");
      hconf.set("dfs.datanode.http.address", host + ":0");
      hconf.set("dfs.datanode.ipc.address", host + ":0");
      hconf.set(MiniDFSCluster.HDFS_MINIDFS_BASEDIR, out.resolve("hdfs").toString());
      dfs = new MiniDFSCluster.Builder(hconf).nameNodePort(nnPort).nameNodeHttpPort(nnHttp)
          .numDataNodes(1).format(true).build();
      dfs.waitActive();
      defaultFS = "hdfs://" + host + ":" + nnPort;
      webhdfs = "http://" + host + ":" + nnHttp;
      conf.set("fs.defaultFS", defaultFS);
      conf.setBoolean("dfs.permissions.enabled", false);
    }
    final MiniDFSCluster dfsFinal = dfs;

    MiniYARNCluster cluster = new MiniYARNCluster("shoal", nms, 1, 1);
    CountDownLatch stopped = new CountDownLatch(1);
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      try {
        Files.deleteIfExists(out.resolve("ready"));
      } catch (IOException ignored) {
        // best effort: the cluster is stopping anyway
      }
      // NodeManagers wait for their applications' log retention on stop; stop them side by side
      List<Thread> stops = new ArrayList<>();
      for (int i = 0; i < nms; i++) {
        NodeManager nm = cluster.getNodeManager(i);
        if (nm != null) {
          Thread t = new Thread(nm::stop, "stop-nm-" + i);
          t.start();
          stops.add(t);
        }
      }
      for (Thread t : stops) {
        try {
          t.join();
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
        }
      }
      cluster.stop();
      if (dfsFinal != null) {
        dfsFinal.shutdown();
      }
      stopped.countDown();
    }, "shoal-minicluster-stop"));

    cluster.init(conf);
    cluster.start();

    // The RM's ports are known only once its services have started.
    long deadline = System.currentTimeMillis() + 120_000;
    while (cluster.getResourceManager().getConfig().getSocketAddr(YarnConfiguration.RM_ADDRESS,
        YarnConfiguration.DEFAULT_RM_ADDRESS, YarnConfiguration.DEFAULT_RM_PORT).getPort() == 0) {
      if (System.currentTimeMillis() > deadline) {
        throw new IllegalStateException("resource manager did not get a port in 120 s");
      }
      Thread.sleep(100);
    }
    if (!cluster.waitForNodeManagersToConnect(120_000)) {
      throw new IllegalStateException("node managers did not register in 120 s");
    }

    String labeled = "";
    if (!label.isEmpty()) {
      RMNodeLabelsManager labels = cluster.getResourceManager().getRMContext().getNodeLabelManager();
      labels.addToCluserNodeLabels(List.of(NodeLabel.newInstance(label, false)));
      NodeId first = cluster.getNodeManager(0).getNMContext().getNodeId();
      labels.replaceLabelsOnNode(Map.of(first, Set.of(label)));
      labeled = first.toString();
    }

    Configuration live = cluster.getResourceManager().getConfig();
    Path confDir = out.resolve("conf");
    Files.createDirectories(confDir);
    writeAtomically(confDir.resolve("yarn-site.xml"), os -> live.writeXml(os));
    final String fsURI = defaultFS;
    final String nnWeb = webhdfs;
    writeAtomically(confDir.resolve("core-site.xml"), os -> {
      Configuration core = new Configuration(false);
      core.set("fs.defaultFS", fsURI);
      core.writeXml(os);
    });
    if (!nnWeb.isEmpty()) {
      writeAtomically(confDir.resolve("hdfs-site.xml"), os -> {
        Configuration h = new Configuration(false);
        h.set("dfs.namenode.http-address", nnWeb.substring("http://".length()));
        h.setBoolean("dfs.webhdfs.enabled", true);
        h.writeXml(os);
      });
    }

    List<String> nmAddrs = new ArrayList<>();
    List<String> nmWebs = new ArrayList<>();
    for (int i = 0; i < nms; i++) {
      NodeManager nm = cluster.getNodeManager(i);
      nmAddrs.add(nm.getNMContext().getNodeId().toString());
      nmWebs.add(nm.getNMContext().getNodeId().getHost() + ":" + nm.getNMContext().getHttpPort());
    }

    Map<String, String> env = new LinkedHashMap<>();
    env.put("SHOAL_YARN_RM", "http://" + web);
    env.put("SHOAL_YARN_SCHEDULER_ADDRESS", scheduler);
    env.put("YARN_RM_ADDRESS", rm);
    env.put("YARN_CONF_DIR", confDir.toString());
    env.put("HADOOP_CONF_DIR", confDir.toString());
    env.put("YARN_NODEMANAGERS", String.join(",", nmAddrs));
    env.put("YARN_NODEMANAGER_WEBS", String.join(",", nmWebs));
    env.put("YARN_NM_MEMORY_MB", Integer.toString(nmMemMB));
    env.put("YARN_NM_VCORES", Integer.toString(nmVcores));
    env.put("YARN_DEFAULT_FS", defaultFS);
    env.put("SHOAL_YARN_WEBHDFS", webhdfs);
    env.put("YARN_NODE_LABEL", label);
    env.put("YARN_LABELED_NODE", labeled);
    env.put("YARN_MINICLUSTER_PID", Long.toString(ProcessHandle.current().pid()));

    StringBuilder sh = new StringBuilder();
    StringBuilder json = new StringBuilder("{\n");
    int n = 0;
    for (Map.Entry<String, String> e : env.entrySet()) {
      sh.append(e.getKey()).append('=').append(e.getValue()).append('\n');
      json.append("  \"").append(e.getKey()).append("\": \"").append(e.getValue()).append('"')
          .append(++n < env.size() ? ",\n" : "\n");
    }
    json.append("}\n");
    writeAtomically(out.resolve("env"), os -> os.write(sh.toString().getBytes(StandardCharsets.UTF_8)));
    writeAtomically(out.resolve("cluster.json"),
        os -> os.write(json.toString().getBytes(StandardCharsets.UTF_8)));
    writeAtomically(out.resolve("ready"), os -> os.write('\n'));
    System.err.println("shoal-minicluster: ready, rm web http://" + web + ", scheduler " + scheduler
        + ", " + nms + " node managers");

    if (stopOnEOF) {
      InputStream in = System.in;
      byte[] buf = new byte[256];
      while (in.read(buf) >= 0) {
        // drain until the parent closes our standard input
      }
      System.exit(0);
    }
    stopped.await();
  }

  private interface Writer {
    void write(OutputStream os) throws IOException;
  }

  private static void writeAtomically(Path dst, Writer w) throws IOException {
    Path tmp = dst.resolveSibling(dst.getFileName() + ".tmp");
    try (OutputStream os = new FileOutputStream(tmp.toFile())) {
      w.write(os);
    }
    Files.move(tmp, dst, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
  }

  private static Map<String, String> parse(String[] args) {
    Map<String, String> m = new LinkedHashMap<>();
    for (int i = 0; i < args.length; i++) {
      String a = args[i];
      if (!a.startsWith("--")) {
        throw new IllegalArgumentException("unexpected argument " + a + "; use --name value");
      }
      String k = a.substring(2);
      if (k.equals("stop-on-eof") || k.equals("hdfs")) {
        m.put(k, "true");
      } else if (i + 1 < args.length) {
        m.put(k, args[++i]);
      } else {
        throw new IllegalArgumentException(a + " needs a value");
      }
    }
    return m;
  }
}
