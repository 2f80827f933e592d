import { href } from '../router';
import { PageTitle } from './page-title';

export function NotFoundPage({ path }: { path: string }) {
  return (
    <>
      <PageTitle>Page not found</PageTitle>
      <p>The dashboard has no page at <code>{path}</code>.</p>
      <p><a href={href.builders()}>Go to the builders</a></p>
    </>
  );
}
