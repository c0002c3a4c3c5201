import { repositoryDir } from './config';
import { FsBlobStore } from './engine/repository/fs-blob-store';
import { Repository } from './engine/repository/repository';

/** The configured repository (VMDEDUP_REPOSITORY, else under VMDEDUP_HOME); created on first use unless `mustExist`. */
export async function openRepository(options: { mustExist?: boolean } = {}): Promise<Repository> {
  const store = new FsBlobStore(repositoryDir());
  return options.mustExist ? Repository.open(store) : Repository.openOrInit(store);
}
