import './styles.css';
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { App } from './components/app';
import { startDashboard } from './store/actions';

const root = document.getElementById('root');
if (!root) throw new Error('index.html has no #root element');
startDashboard();
createRoot(root).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
