DROP TABLE plugin_kv;
DROP TABLE plugins;
