"""The scene-folder contract: where every file lives (paths), typed readers and writers (io), hashed
manifests (manifest), the report page (report), and the formats every stage shares: cameras and 3DGS PLY."""
